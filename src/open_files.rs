//! The open-file limit. Every connection a receiver serves is a file descriptor, and the soft
//! limit most systems start processes with (1024) is reached by a thousand idle clients, after
//! which no port of the process accepts anything, health included. The hard limit is usually
//! far higher and any process may raise its soft limit up to it, as the OTel Collector does.

/// Raises the soft limit on open files to the hard limit. Failing to is worth a warning, not
/// an exit: the collector still works, with fewer connections.
pub fn raise_limit() {
    match raise_to_hard_limit() {
        Ok((before, after)) if before == after => {
            tracing::debug!(open_files = after, "open-file limit already at its maximum");
        }
        Ok((before, after)) => {
            tracing::debug!(from = before, to = after, "raised the open-file limit");
        }
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit (ulimit -n)");
        }
    }
}

/// The soft limit before and after.
fn raise_to_hard_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur >= limit.rlim_max {
        return Ok((before, before));
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, after) = raise_to_hard_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(after, limit.rlim_max);
    }
}
