//! libvirt's backup job (`virDomainBackupBegin`, push mode), which the `virt` crate does not
//! wrap: the one place edgeward calls libvirt's C API itself, hence the only module where
//! `unsafe_code` is allowed. Two calls, each a plain C call on a live `virDomainPtr` owned by a
//! `virt::domain::Domain` the caller holds for the call's whole length:
//!
//! - [`begin`]: `virDomainBackupBegin(dom, xml, NULL, 0)` — starts the job; QEMU copies every
//!   listed disk as it was at this instant (copy-before-write) into the target files while the
//!   guest runs on. No checkpoint (full backups only).
//! - [`abort`]: `virDomainAbortJob(dom)` — cancels it (a failed or timed-out backup).
//! - [`last_completed`]: `virDomainGetJobStats(…, COMPLETED)` — how the last job ended. The
//!   crate's `Domain::get_job_stats` builds a `Vec` from libvirt's parameter array without
//!   checking it for NULL, which libvirt returns when there is nothing to report: undefined
//!   behaviour (a panic under debug checks). So the end is read here, and the running job's
//!   progress with the crate's `get_job_info` (a plain struct).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};

use virt::domain::Domain;
use virt::error::Error;
use virt::sys;

/// Starts a push-mode backup job described by `backup_xml` (see
/// [`super::xml::push_backup`]).
pub(super) fn begin(dom: &Domain, xml: &CStr) -> Result<(), Error> {
    // SAFETY: `dom.as_ptr()` is a valid domain pointer for as long as `dom` lives (it does for
    // the whole call); `xml` is a NUL-terminated string that outlives the call; a NULL
    // checkpoint XML is documented as "no checkpoint"; libvirt copies what it keeps.
    let ret = unsafe { sys::virDomainBackupBegin(dom.as_ptr(), xml.as_ptr(), std::ptr::null(), 0) };
    if ret < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// Cancels the domain's running job.
pub(super) fn abort(dom: &Domain) -> Result<(), Error> {
    // SAFETY: as in `begin`: a valid domain pointer for the whole call, no other argument.
    let ret = unsafe { sys::virDomainAbortJob(dom.as_ptr()) };
    if ret < 0 {
        return Err(Error::last_error());
    }
    Ok(())
}

/// How the domain's last job ended (`VIR_DOMAIN_JOB_COMPLETED`, `…_FAILED`, `…_CANCELLED`, or
/// `VIR_DOMAIN_JOB_NONE` when libvirt keeps no record), with libvirt's error message when it
/// kept one.
pub(super) fn last_completed(dom: &Domain) -> Result<(i32, Option<String>), Error> {
    let mut kind: std::ffi::c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut n: std::ffi::c_int = 0;
    // SAFETY: a valid domain pointer for the whole call; the three out-pointers point at live
    // locals; libvirt allocates `params` (or leaves it NULL) and we free it below.
    let ret = unsafe {
        sys::virDomainGetJobStats(
            dom.as_ptr(),
            &mut kind,
            &mut params,
            &mut n,
            sys::VIR_DOMAIN_JOB_STATS_COMPLETED,
        )
    };
    if ret < 0 {
        return Err(Error::last_error());
    }
    let mut message = None;
    if !params.is_null() {
        let key = CString::new("errmsg").unwrap_or_default();
        let mut text: *const std::ffi::c_char = std::ptr::null();
        // SAFETY: `params` holds `n` parameters from libvirt; `key` is NUL-terminated; a
        // found string points into `params`, copied before `params` is freed.
        unsafe {
            if sys::virTypedParamsGetString(params, n, key.as_ptr(), &mut text) == 1
                && !text.is_null()
            {
                message = Some(CStr::from_ptr(text).to_string_lossy().into_owned());
            }
            sys::virTypedParamsFree(params, n);
        }
    }
    Ok((kind, message))
}
