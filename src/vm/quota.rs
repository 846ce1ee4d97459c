//! Quotas (pure): a user's limits against what the user's VMs already hold.
//!
//! Usage counts every VM a user owns, running or not: a stopped VM keeps its disk and can be
//! started at any time, so its CPU and memory stay reserved (the original counted only
//! running VMs, which let a user define more than the limit and start them one by one).

use super::{Resource, VmError, VmView};

/// Limits (seed 004's `max_vms`, `max_cpu`, `max_memory` in MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_vms: u64,
    pub max_cpu: u64,
    pub max_memory: u64,
}

/// What a user's VMs hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub vms: u64,
    pub cpu: u64,
    pub memory: u64,
}

impl Usage {
    /// The usage of `owner`'s VMs among `vms`, leaving out VM `except` (a resize counts the
    /// VM's new size instead of its old one).
    pub fn of<'a>(
        vms: impl IntoIterator<Item = &'a VmView>,
        owner: u64,
        except: Option<u64>,
    ) -> Self {
        let mut u = Usage::default();
        for vm in vms
            .into_iter()
            .filter(|v| v.owner_id == owner && Some(v.id) != except)
        {
            u.vms += 1;
            u.cpu += u64::from(vm.cpu);
            u.memory += vm.memory;
        }
        u
    }
}

/// Whether a new VM of `cpu` vCPUs and `memory` MiB fits (VMs first, then CPU, then memory).
pub fn check_create(limits: Limits, usage: Usage, cpu: u32, memory: u64) -> Result<(), VmError> {
    check(Resource::Vms, usage.vms, 1, limits.max_vms)?;
    check(Resource::Cpu, usage.cpu, u64::from(cpu), limits.max_cpu)?;
    check(Resource::Memory, usage.memory, memory, limits.max_memory)
}

/// Whether a VM may be resized to `cpu`/`memory`; `usage` leaves the VM itself out.
pub fn check_resize(limits: Limits, usage: Usage, cpu: u32, memory: u64) -> Result<(), VmError> {
    check(Resource::Cpu, usage.cpu, u64::from(cpu), limits.max_cpu)?;
    check(Resource::Memory, usage.memory, memory, limits.max_memory)
}

fn check(resource: Resource, current: u64, requested: u64, limit: u64) -> Result<(), VmError> {
    if current.saturating_add(requested) > limit {
        return Err(VmError::Quota {
            resource,
            current,
            requested,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmStatus;

    fn vm(id: u64, owner: u64, cpu: u32, memory: u64) -> VmView {
        VmView {
            id,
            vmid: 100,
            uuid: String::new(),
            name: format!("vm-{id}"),
            cpu,
            memory,
            status: VmStatus::Stopped,
            os_type: "kali".into(),
            owner_id: owner,
            created_at: 0,
            updated_at: 0,
        }
    }

    const L: Limits = Limits {
        max_vms: 2,
        max_cpu: 4,
        max_memory: 4096,
    };

    #[test]
    fn usage_is_per_owner_and_can_leave_one_out() {
        let vms = [vm(1, 7, 2, 1024), vm(2, 7, 1, 512), vm(3, 8, 8, 8192)];
        assert_eq!(
            Usage::of(&vms, 7, None),
            Usage {
                vms: 2,
                cpu: 3,
                memory: 1536
            }
        );
        assert_eq!(Usage::of(&vms, 7, Some(1)).cpu, 1);
        assert_eq!(Usage::of(&vms, 9, None), Usage::default());
    }

    #[test]
    fn refusals_name_the_resource_and_the_numbers() {
        let u = Usage {
            vms: 1,
            cpu: 3,
            memory: 2048,
        };
        assert_eq!(check_create(L, u, 1, 2048), Ok(()));
        assert_eq!(
            check_create(L, u, 2, 512),
            Err(VmError::Quota {
                resource: Resource::Cpu,
                current: 3,
                requested: 2,
                limit: 4
            })
        );
        assert_eq!(
            check_create(L, u, 1, 2560),
            Err(VmError::Quota {
                resource: Resource::Memory,
                current: 2048,
                requested: 2560,
                limit: 4096
            })
        );
        let full = Usage { vms: 2, ..u };
        assert!(matches!(
            check_create(L, full, 1, 512),
            Err(VmError::Quota {
                resource: Resource::Vms,
                current: 2,
                requested: 1,
                limit: 2
            })
        ));
        // A resize does not count as another VM.
        assert_eq!(check_resize(L, full, 1, 512), Ok(()));
    }
}
