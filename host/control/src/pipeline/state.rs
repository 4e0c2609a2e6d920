//! The state database under the running host: a file removed or replaced is noticed, the file now
//! at its path is opened (or created), and the deployments being served are written back into it,
//! so that a restart still finds them.

use std::time::{Duration, Instant};

use super::Plane;
use crate::error_chain;

/// How often the admin thread looks at the state database when idle.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the watch knows about the state database.
#[derive(Debug)]
pub(super) struct StateWatch {
    checked: Instant,
    /// Why the database cannot be used, while it cannot.
    error: Option<String>,
    /// The database was opened anew and the deployments are not all back in it yet.
    restore_pending: bool,
}

impl StateWatch {
    pub(super) fn new() -> Self {
        Self {
            checked: Instant::now(),
            error: None,
            restore_pending: false,
        }
    }
}

impl Plane {
    /// At most once a second (the admin thread calls it when idle).
    pub(crate) fn watch_state(&mut self) {
        if self.state_watch.checked.elapsed() >= CHECK_EVERY {
            self.check_state();
        }
    }

    /// Why the state database cannot be used, if it cannot.
    pub(crate) fn state_error(&self) -> Option<&str> {
        self.state_watch.error.as_deref()
    }

    /// Look now, before a deploy or a removal writes to the database: while the file at its path
    /// cannot be used, the change is refused (503) rather than written into a file that was
    /// replaced and would be lost at the next restart.
    pub(super) fn refuse_if_state_unusable(&mut self) -> Result<(), super::Failure> {
        self.check_state();
        match self.state_error() {
            Some(why) => Err(super::fail(
                503,
                format!("nothing was changed: the state database cannot be used: {why}"),
            )),
            None => Ok(()),
        }
    }

    fn check_state(&mut self) {
        self.state_watch.checked = Instant::now();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let watch = &mut self.state_watch;
        let result = store.reopen_if_replaced().and_then(|reopened| {
            if reopened {
                watch.restore_pending = true;
                tracing::error!(
                    path = %store.path().display(),
                    "the state database was removed or replaced under the running host; \
                     writing the {} deployments being served into the file now at that path",
                    self.dynamic.len()
                );
            }
            if watch.restore_pending {
                for row in self.dynamic.values() {
                    store.restore_row(row)?;
                }
                watch.restore_pending = false;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if watch.error.take().is_some() {
                    tracing::info!(path = %store.path().display(), "the state database is usable again");
                }
            }
            Err(e) => {
                let why = error_chain(&e);
                if watch.error.as_deref() != Some(why.as_str()) {
                    tracing::error!("the state database cannot be used; serving goes on: {why}");
                }
                watch.error = Some(why);
            }
        }
    }
}
