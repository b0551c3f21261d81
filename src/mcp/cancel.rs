//! `notifications/cancelled` (2025 generations): the calls in flight in this isolate that
//! a later request may cancel, by caller and request id.
//!
//! A stateless server has no session to find the call by, so a cancellation reaches the
//! call only when it arrives at the isolate serving it (a client reusing its connection
//! usually does); elsewhere it is accepted and does nothing, and closing the stream is
//! what cancels. A caller can cancel only its own calls.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
};

use serde_json::Value;

use super::tools::Live;

/// A call that may be cancelled: its flag and, once its reply streams, what ends it.
struct Entry {
    cancelled: Rc<Cell<bool>>,
    abort: RefCell<Option<Rc<dyn Fn()>>>,
}

thread_local! {
    static IN_FLIGHT: RefCell<HashMap<(String, String), Rc<Entry>>> = RefCell::new(HashMap::new());
}

/// Cancels the caller's call `request_id` if it is in flight here; whether it was.
pub fn cancel(caller: &str, request_id: &Value) -> bool {
    let key = (caller.to_owned(), request_id.to_string());
    let Some(entry) = IN_FLIGHT.with(|m| m.borrow().get(&key).cloned()) else {
        return false;
    };
    entry.cancelled.set(true);
    if let Some(abort) = entry.abort.borrow().as_ref() {
        abort();
    }
    true
}

/// The client's stream of a call that can be cancelled: the stream it wraps (if any), and
/// gone once the client closed it or cancelled the call. Leaves the registry when dropped.
pub struct Cancellable<'a> {
    inner: Option<&'a dyn Live>,
    key: (String, String),
    entry: Rc<Entry>,
}

impl<'a> Cancellable<'a> {
    /// Registers the caller's call `request_id`, in flight over `inner`.
    pub fn register(caller: &str, request_id: &Value, inner: Option<&'a dyn Live>) -> Self {
        let key = (caller.to_owned(), request_id.to_string());
        let entry = Rc::new(Entry {
            cancelled: Rc::new(Cell::new(false)),
            abort: RefCell::new(None),
        });
        IN_FLIGHT.with(|m| m.borrow_mut().insert(key.clone(), entry.clone()));
        Self { inner, key, entry }
    }

    /// Once the reply streams, a cancellation also ends the stream (and so the requests
    /// made for it) at once.
    fn arm(&self) {
        if self.entry.abort.borrow().is_none()
            && let Some(hook) = self.inner.and_then(Live::abort_hook)
        {
            *self.entry.abort.borrow_mut() = Some(hook);
        }
    }
}

impl Drop for Cancellable<'_> {
    fn drop(&mut self) {
        IN_FLIGHT.with(|m| {
            let mut m = m.borrow_mut();
            if m.get(&self.key).is_some_and(|e| Rc::ptr_eq(e, &self.entry)) {
                m.remove(&self.key);
            }
        });
    }
}

impl Live for Cancellable<'_> {
    fn send(&self, message: &Value) -> bool {
        let sent = self.inner.is_some_and(|l| l.send(message));
        self.arm();
        sent && !self.gone()
    }

    fn keep_alive(&self) {
        if let Some(l) = self.inner {
            l.keep_alive();
        }
        self.arm();
    }

    fn gone(&self) -> bool {
        self.entry.cancelled.get() || self.inner.is_some_and(Live::gone)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_callers_own_call_in_flight_is_cancelled() {
        let call = Cancellable::register("acct:a", &json!(7), None);
        assert!(!call.gone());
        assert!(
            !cancel("acct:b", &json!(7)),
            "another caller's cancellation"
        );
        assert!(
            !cancel("acct:a", &json!("7")),
            "another id (a string, not the number)"
        );
        assert!(!call.gone());
        assert!(cancel("acct:a", &json!(7)));
        assert!(call.gone());
        drop(call);
        assert!(
            !cancel("acct:a", &json!(7)),
            "a finished call is no longer registered"
        );
    }
}
