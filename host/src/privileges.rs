//! Starting as root to bind privileged ports (25, 465, 587), then running
//! as `server.user`: the group list, the group and the user are switched
//! for good (setgroups, setgid, setuid), and a switch back is checked to
//! fail, before any file is created or any mail read.

use std::ffi::{CStr, CString};

/// A user to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: libc::uid_t,
    /// Its primary group.
    pub gid: libc::gid_t,
}

/// Look `name` up in the password database.
pub fn account(name: &str) -> Result<Account, String> {
    let c = CString::new(name).map_err(|_| format!("server.user {name:?}: not a user name"))?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pw` and `buf`, both ours and large
    // enough (ERANGE otherwise), and sets `out` to `&pw` or null.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 {
        return Err(format!(
            "server.user {name}: cannot look it up: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    if out.is_null() {
        return Err(format!("server.user {name}: no such user"));
    }
    Ok(Account {
        name: name.to_string(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// Become `user` when started as root (after the listening sockets are
/// bound). Started as that user already: nothing to do. Started as
/// someone else: an error, since the files would belong to the wrong user.
pub fn drop_to(user: &str) -> Result<Option<Account>, String> {
    let a = account(user)?;
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == a.uid {
        return Ok(None);
    }
    if euid != 0 {
        return Err(format!(
            "server.user = {user:?} (uid {}), but started as uid {euid}: start as root \
             (to bind privileged ports and switch) or as {user}",
            a.uid
        ));
    }
    let name = CString::new(user).expect("checked above");
    let os = |what: &str| {
        format!(
            "cannot switch to {user}: {what}: {}",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: plain system calls with values from the password database.
    unsafe {
        if libc::initgroups(name.as_ptr(), a.gid) != 0 {
            return Err(os("initgroups"));
        }
        if libc::setgid(a.gid) != 0 {
            return Err(os("setgid"));
        }
        if libc::setuid(a.uid) != 0 {
            return Err(os("setuid"));
        }
        // The switch is for good: root must be out of reach.
        if libc::setuid(0) == 0 {
            return Err(format!("cannot switch to {user}: could become root again"));
        }
    }
    Ok(Some(a))
}

/// The name of the user the process runs as, for the log.
pub fn current_user() -> String {
    // SAFETY: getpwuid returns null or a pointer to static storage that
    // we copy out of at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            format!("uid {}", libc::geteuid())
        } else {
            CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts() {
        assert_eq!(account("root").unwrap().uid, 0);
        let e = account("no-such-user-here").unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        assert!(account("a\0b").is_err());
        // Already that user: nothing happens.
        assert_eq!(drop_to(&current_user()).unwrap(), None);
    }
}
