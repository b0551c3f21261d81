//! The executor of the fetch export and of the Durable Objects' events: a handling that
//! waits on a promise is polled again within the promise callback that wakes it.
//!
//! wasm-bindgen's executor (`future_to_promise`, which `#[event(fetch)]` and
//! `#[durable_object]` use) queues a microtask per wake and makes a task and a promise per
//! event; on this hot path those cost more than the Rust a request runs. No executor crate
//! for wasm32 polls in the waking callback (the general-purpose ones need a thread or an
//! event loop of their own), hence this one. It relies on one rule: every future a handling
//! awaits settles from a promise callback, never from inside another poll (true of
//! `JsFuture` and of the `worker` crate's futures, which are `JsFuture`s).

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Poll, Wake, Waker},
};

use wasm_bindgen::JsValue;
use worker::js_sys;

use super::js;

/// A handling: its value, or the error its promise rejects with.
type Handling = Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>;

/// Polls `handling` once: its value when it completes at once (an error: a rejected
/// promise), else a promise that settles when it does.
pub(crate) fn start(handling: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> JsValue {
    let id = NEXT_ID.with(|n| {
        n.set(n.get().wrapping_add(1));
        n.get()
    });
    let wakeup = Arc::new(Wakeup {
        id,
        woken: AtomicBool::new(false),
    });
    let mut waiting = Waiting {
        handling: Box::pin(handling),
        done: JsValue::UNDEFINED,
    };
    match waiting.poll(&wakeup) {
        Some(Ok(value)) => value,
        Some(Err(e)) => js_sys::Promise::reject(&e).into(),
        None => {
            waiting.done = js::deferred();
            let promise = js::deferred_promise(&waiting.done);
            WAITING.with_borrow_mut(|w| w.push((id, waiting)));
            promise.into()
        }
    }
}

/// A handling waiting on a promise, and the `{promise, resolve, reject}` (glue `deferred`)
/// the runtime was given a promise of.
struct Waiting {
    handling: Handling,
    done: JsValue,
}

thread_local! {
    /// The handlings waiting on a promise, by id. A handling is taken out while it is
    /// polled, so a wake during its own poll finds nothing and only marks it woken.
    static WAITING: RefCell<Vec<(u32, Waiting)>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
}

/// The waker of one handling (`Send` and `Sync` as `Waker` needs: an id and a flag).
struct Wakeup {
    id: u32,
    woken: AtomicBool,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        let taken = WAITING.with_borrow_mut(|w| {
            let at = w.iter().position(|(id, _)| *id == self.id)?;
            Some(w.swap_remove(at).1)
        });
        let Some(mut waiting) = taken else { return };
        match waiting.poll(self) {
            Some(Ok(value)) => js::resolve_deferred(&waiting.done, &value),
            Some(Err(e)) => js::reject_deferred(&waiting.done, &e),
            None => WAITING.with_borrow_mut(|w| w.push((self.id, waiting))),
        }
    }
}

impl Waiting {
    /// Polls until complete, or pending with no wake in between.
    fn poll(&mut self, wakeup: &Arc<Wakeup>) -> Option<Result<JsValue, JsValue>> {
        let waker = Waker::from(wakeup.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            wakeup.woken.store(false, Ordering::Relaxed);
            match self.handling.as_mut().poll(&mut cx) {
                Poll::Ready(outcome) => return Some(outcome),
                Poll::Pending if wakeup.woken.load(Ordering::Relaxed) => continue,
                Poll::Pending => return None,
            }
        }
    }
}

/// Exports a Durable Object class (an implementation of `worker::DurableObject`) under the
/// class name `$js`, as `#[durable_object]` does, but with its `fetch` and `alarm` events
/// run by [`start`] instead of wasm-bindgen's executor. The object is kept in an `Rc` that
/// each event's handling holds, so that no reference to it outlives it.
macro_rules! durable_export {
    ($export:ident, $object:ty, $js:literal) => {
        impl worker::has_durable_object_attribute for $object {}

        #[wasm_bindgen::prelude::wasm_bindgen(js_name = $js)]
        #[allow(unreachable_pub)] // exported to JavaScript (wasm-bindgen), not to Rust
        pub struct $export(std::rc::Rc<$object>);

        #[wasm_bindgen::prelude::wasm_bindgen(js_class = $js)]
        #[allow(unreachable_pub)]
        impl $export {
            #[wasm_bindgen(constructor)]
            pub fn new(state: worker::worker_sys::DurableObjectState, env: worker::Env) -> Self {
                let state = worker::durable::State::from(state);
                Self(std::rc::Rc::new(<$object as worker::DurableObject>::new(
                    state, env,
                )))
            }

            pub fn fetch(&self, req: worker::web_sys::Request) -> wasm_bindgen::JsValue {
                let object = std::rc::Rc::clone(&self.0);
                $crate::adapters::exec::start(async move {
                    <$object as worker::DurableObject>::fetch(&object, req.into())
                        .await
                        .map(|r| worker::web_sys::Response::from(r).into())
                        .map_err(wasm_bindgen::JsValue::from)
                })
            }

            pub fn alarm(&self) -> wasm_bindgen::JsValue {
                let object = std::rc::Rc::clone(&self.0);
                $crate::adapters::exec::start(async move {
                    <$object as worker::DurableObject>::alarm(&object)
                        .await
                        .map(|r| worker::web_sys::Response::from(r).into())
                        .map_err(wasm_bindgen::JsValue::from)
                })
            }
        }
    };
}

pub(crate) use durable_export;
