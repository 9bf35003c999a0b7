//! Processes a test starts, ended when the test ends, pass or fail.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// A child process that is killed (SIGKILL) and waited for when dropped: when its test returns,
/// and when its test panics (the unwinding drops it). With [`Killed::group`] the whole process
/// group goes, so a program's own children (chromedriver's browser, `script`'s command) go too.
///
/// Derefs to the [`Child`], so `guard.id()`, `guard.kill()`, `guard.wait()` work as before.
pub struct Killed {
    child: Child,
    /// The child leads a process group of its own (spawned with `process_group(0)`).
    group: bool,
}

impl Killed {
    /// Guards `child`.
    pub fn new(child: Child) -> Killed {
        Killed {
            child,
            group: false,
        }
    }

    /// Guards `child` and every process of its group; `child` must have been spawned with
    /// `std::os::unix::process::CommandExt::process_group(0)`.
    pub fn group(child: Child) -> Killed {
        Killed { child, group: true }
    }
}

impl Deref for Killed {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if self.group {
            // The group outlives its leader's exit while members remain, so kill it even when
            // the leader is gone (its id is not reused until it is reaped, below).
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
        // A no-op once the child has been waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
