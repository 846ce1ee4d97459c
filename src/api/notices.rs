//! The words of the notifications edgeward sends on its own: account changes, modem
//! recoveries, dongle egress lost and back, and seed 003's operations (servers created,
//! started, stopped, rebooted, deleted; backups and restores ended; firewall groups changed and
//! assigned). Seed 003 shows its notifications in Korean (`서버 생성 완료`), so these are too.
//! `app.rs` and the seed-003 handlers hand their events here and push what comes back; the
//! domains carry data only.
//!
//! Who is told: a server's events go to its owner (and, as every notification, to the admins);
//! changes of the box-wide firewall groups go to the admins. `view_all` lets a user see every
//! server, not read other users' notifications: an operator who acts on another user's server
//! has the answer and the task, and the owner is told.

use crate::auth::AccountEvent;
use crate::modem::heal::supervisor::HealEvent;
use crate::modem::heal::StepResult;
use crate::notify::{Audience, Category, Level, NewNotification};
use crate::wg::egress::{EgressChange, LinkState};

fn notice(title: &str, message: String, level: Level, category: Category) -> NewNotification {
    NewNotification {
        title: title.to_owned(),
        message,
        level,
        category,
        audience: Audience::Admins,
    }
}

/// What happened to a server, as its owner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerNotice<'a> {
    Created { vmid: u32 },
    CreateFailed { why: &'a str },
    Started,
    Stopped,
    Rebooted,
    Deleted,
    BackedUp { file: &'a str },
    BackupFailed { why: &'a str },
    Restored { file: &'a str },
    RestoreFailed { why: &'a str },
    GroupAssigned { group: &'a str },
    GroupsRemoved { groups: &'a [String] },
}

/// Server `name`'s event `n`, for its owner `owner_id`.
pub fn server(owner_id: u64, name: &str, n: &ServerNotice<'_>) -> NewNotification {
    use ServerNotice as N;
    let (title, message, level, category) = match n {
        N::Created { vmid } => (
            "서버 생성 완료",
            format!("{name} 서버가 생성되었습니다 (vmid {vmid})."),
            Level::Success,
            Category::Server,
        ),
        N::CreateFailed { why } => (
            "서버 생성 실패",
            format!("{name} 서버를 만들지 못했습니다: {why}"),
            Level::Error,
            Category::Server,
        ),
        N::Started => (
            "서버 시작",
            format!("{name} 서버가 시작되었습니다."),
            Level::Info,
            Category::Server,
        ),
        N::Stopped => (
            "서버 중지",
            format!("{name} 서버가 중지되었습니다."),
            Level::Info,
            Category::Server,
        ),
        N::Rebooted => (
            "서버 재시작",
            format!("{name} 서버가 재시작되었습니다."),
            Level::Info,
            Category::Server,
        ),
        N::Deleted => (
            "서버 삭제",
            format!("{name} 서버가 삭제되었습니다."),
            Level::Warning,
            Category::Server,
        ),
        N::BackedUp { file } => (
            "백업 완료",
            format!("{name} 서버의 백업이 완료되었습니다: {file}"),
            Level::Success,
            Category::Backup,
        ),
        N::BackupFailed { why } => (
            "백업 실패",
            format!("{name} 서버의 백업이 실패했습니다: {why}"),
            Level::Error,
            Category::Backup,
        ),
        N::Restored { file } => (
            "복원 완료",
            format!("{name} 서버가 {file}에서 복원되었습니다."),
            Level::Success,
            Category::Backup,
        ),
        N::RestoreFailed { why } => (
            "복원 실패",
            format!("{name} 서버의 복원이 실패했습니다: {why}"),
            Level::Error,
            Category::Backup,
        ),
        N::GroupAssigned { group } => (
            "방화벽 그룹 할당",
            format!("Security Group '{group}'이(가) {name}에 할당되었습니다."),
            Level::Info,
            Category::Firewall,
        ),
        N::GroupsRemoved { groups } => (
            "방화벽 그룹 해제",
            format!(
                "{name}에서 Security Group {}의 할당이 해제되었습니다.",
                groups
                    .iter()
                    .map(|g| format!("'{g}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Level::Info,
            Category::Firewall,
        ),
    };
    NewNotification {
        audience: Audience::User(owner_id),
        ..notice(title, message, level, category)
    }
}

/// A change of the firewall groups themselves (`message` says which), for the admins.
pub fn firewall(message: String) -> NewNotification {
    notice("방화벽 그룹 변경", message, Level::Info, Category::Firewall)
}

/// An account change, for the admins.
pub fn account(event: &AccountEvent) -> NewNotification {
    let user = |e: &AccountEvent| match e {
        AccountEvent::Created { user }
        | AccountEvent::Registered { user }
        | AccountEvent::Approved { user }
        | AccountEvent::RoleChanged { user, .. }
        | AccountEvent::Deleted { user } => user.username.clone(),
    };
    let name = user(event);
    let (title, message, level) = match event {
        AccountEvent::Created { user } => (
            "사용자 생성",
            format!(
                "{name} 사용자가 생성되었습니다 (역할: {}).",
                user.role.as_str()
            ),
            Level::Info,
        ),
        AccountEvent::Registered { .. } => (
            "사용자 승인 대기",
            format!("{name} 사용자가 가입했습니다. 관리자의 승인을 기다립니다."),
            Level::Warning,
        ),
        AccountEvent::Approved { .. } => (
            "사용자 승인",
            format!("{name} 사용자가 승인되었습니다."),
            Level::Success,
        ),
        AccountEvent::RoleChanged { user, from } => (
            "사용자 역할 변경",
            format!(
                "{name} 사용자의 역할이 {}에서 {}(으)로 변경되었습니다.",
                from.as_str(),
                user.role.as_str()
            ),
            Level::Info,
        ),
        AccountEvent::Deleted { .. } => (
            "사용자 삭제",
            format!("{name} 사용자가 삭제되었습니다."),
            Level::Warning,
        ),
    };
    notice(title, message, level, Category::User)
}

/// A modem recovery step, recovery or give-up, for the admins.
pub fn heal(event: &HealEvent) -> NewNotification {
    let (title, message, level) = match event {
        HealEvent::StepStarted {
            modem,
            step,
            problem,
        } => (
            "모뎀 복구 시도",
            match problem {
                Some(p) => format!("모뎀 {modem}: 복구 단계 {} 실행 ({p}).", step.as_str()),
                None => format!("모뎀 {modem}: 복구 단계 {} 실행.", step.as_str()),
            },
            Level::Warning,
        ),
        HealEvent::Recovered {
            modem,
            step,
            detail,
        } => (
            "모뎀 복구 완료",
            format!(
                "모뎀 {modem}이(가) {} 단계로 복구되었습니다: {detail}",
                step.as_str()
            ),
            Level::Success,
        ),
        HealEvent::GaveUp {
            modem,
            detail,
            retry_in,
        } => (
            "모뎀 복구 실패",
            format!(
                "모뎀 {modem}: 모든 복구 단계가 실패했습니다 ({detail}). {}초 후 다시 시도합니다.",
                retry_in.as_secs()
            ),
            Level::Error,
        ),
        HealEvent::ControllerReset {
            modems,
            result,
            detail,
        } => (
            "USB 컨트롤러 재설정",
            format!(
                "모뎀 {modems:?}의 USB 컨트롤러 재설정 {}: {detail}",
                result.as_str()
            ),
            if *result == StepResult::Recovered {
                Level::Warning
            } else {
                Level::Error
            },
        ),
    };
    notice(title, message, level, Category::System)
}

/// A dongle's egress lost or back, for the admins.
pub fn egress(change: &EgressChange) -> NewNotification {
    let name = |netdev: &str| {
        if netdev.is_empty() {
            "(인터페이스 없음)".to_owned()
        } else {
            netdev.to_owned()
        }
    };
    match change {
        EgressChange::Lost {
            number,
            netdev,
            link,
        } => {
            let why = match link {
                LinkState::Missing => "인터페이스가 없습니다",
                LinkState::Down => "인터페이스가 내려갔습니다",
                LinkState::NoAddress => "인터페이스에 주소가 없습니다",
                LinkState::Up => "경로가 없습니다",
            };
            notice(
                "동글 출구 끊김",
                format!(
                    "동글 {number}의 트래픽이 나갈 수 없습니다 ({}: {why}). 킬 스위치가 트래픽을 막고 있습니다.",
                    name(netdev)
                ),
                Level::Error,
                Category::System,
            )
        }
        EgressChange::Restored { number, netdev } => notice(
            "동글 출구 복구",
            format!(
                "동글 {number}의 트래픽이 다시 {}(으)로 나갑니다.",
                name(netdev)
            ),
            Level::Success,
            Category::System,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::modem::heal::HealStep;

    #[test]
    fn a_servers_events_go_to_its_owner_in_their_category() {
        let made = server(7, "web-1", &ServerNotice::Created { vmid: 101 });
        assert_eq!(
            (made.level, made.category, made.audience),
            (Level::Success, Category::Server, Audience::User(7))
        );
        assert_eq!(made.title, "서버 생성 완료");
        assert!(made.message.contains("web-1") && made.message.contains("101"));
        let failed = server(7, "web-1", &ServerNotice::BackupFailed { why: "disk gone" });
        assert_eq!(
            (failed.level, failed.category),
            (Level::Error, Category::Backup)
        );
        assert!(failed.message.contains("disk gone"));
        let groups = ["web".to_owned(), "ssh".to_owned()];
        let off = server(7, "web-1", &ServerNotice::GroupsRemoved { groups: &groups });
        assert_eq!(off.category, Category::Firewall);
        assert!(off.message.contains("'web', 'ssh'"), "{}", off.message);
        let fw = firewall("그룹 'web'이(가) 생성되었습니다.".into());
        assert_eq!(
            (fw.category, fw.audience),
            (Category::Firewall, Audience::Admins)
        );
    }

    #[test]
    fn system_events_go_to_the_admins_with_their_level() {
        let gave_up = heal(&HealEvent::GaveUp {
            modem: 17,
            detail: "port power cycle failed".into(),
            retry_in: Duration::from_secs(180),
        });
        assert_eq!(
            (gave_up.level, gave_up.category, gave_up.audience),
            (Level::Error, Category::System, Audience::Admins)
        );
        assert!(gave_up.message.contains("17") && gave_up.message.contains("180"));
        let ok = heal(&HealEvent::Recovered {
            modem: 18,
            step: HealStep::Reboot,
            detail: "registered".into(),
        });
        assert_eq!(ok.level, Level::Success);
        assert!(ok.message.contains("reboot"));
        let lost = egress(&EgressChange::Lost {
            number: 3,
            netdev: "wwan3".into(),
            link: LinkState::Missing,
        });
        assert_eq!(
            (lost.level, lost.audience),
            (Level::Error, Audience::Admins)
        );
        assert!(lost.message.contains("wwan3"));
        let back = egress(&EgressChange::Restored {
            number: 3,
            netdev: "wwan4".into(),
        });
        assert_eq!(back.level, Level::Success);
        assert!(back.message.contains("wwan4"));
    }
}
