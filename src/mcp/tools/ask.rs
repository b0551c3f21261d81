//! `ask`: a question (and optional context) answered by an upstream model, streamed.
//!
//! Providers come from `PROVIDERS` (in order of preference). Each attempt streams the
//! answer; while it arrives, progress goes to the client (at most every
//! [`PROGRESS_EVERY_MS`], and only under a `progressToken`), and keep-alive comments fill
//! long silences. A failure before any output is retried with jittered backoff when it is
//! retryable (connection errors, 429 with `Retry-After`, 5xx), then the next provider is
//! tried; a provider that keeps failing is skipped for a while by its circuit breaker. Once
//! output has been streamed nothing is retried: the answer would repeat. A client that goes
//! away aborts the upstream request at once and the call ends as cancelled.

use std::cell::RefCell;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::principal::SCOPE_TOOLS,
    config::{Config, ProviderSetup},
    upstream::{Backoff, Breakers, Delta, StreamParser, UpstreamRequest},
};

use super::{
    Chunk, Hints, Io, OpenError, Spend, TaskSupport, ToolContext, ToolDef, ToolFuture, ToolOutcome,
    parse_args,
};

/// The longest question, in characters.
const MAX_QUESTION: usize = 8_000;
/// The longest context, in characters.
const MAX_CONTEXT: usize = 32_000;
/// Output tokens asked of the model.
const MAX_TOKENS: u32 = 1_024;
/// The shortest interval between two progress notifications.
const PROGRESS_EVERY_MS: u64 = 250;
/// Failures in a row after which a provider is skipped (for `PROVIDER_COOLDOWN_MS`).
const BREAKER_THRESHOLD: u32 = 3;

thread_local! {
    /// The providers' circuit breakers, per isolate. Sharing them across isolates would
    /// need a Durable Object round trip on every call, which costs more than it saves: an
    /// isolate learns that a provider is failing after `BREAKER_THRESHOLD` calls of its own,
    /// and an isolate serves many calls in a row.
    static BREAKERS: RefCell<Option<Breakers>> = const { RefCell::new(None) };
}

/// Runs `f` on the isolate's breakers (made on first use with the configured cool-down).
fn breakers<T>(config: &Config, f: impl FnOnce(&mut Breakers) -> T) -> T {
    BREAKERS.with(|b| {
        let mut b = b.borrow_mut();
        f(b.get_or_insert_with(|| Breakers::new(BREAKER_THRESHOLD, config.provider_cooldown_ms)))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    question: String,
    #[serde(default)]
    context: Option<String>,
}

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "ask",
        title: "Ask a model",
        description: "Answers a question with an upstream language model, optionally grounded in \
                      context you pass (a document, notes, code). Streams progress while the \
                      answer arrives.",
        input_schema: json!({
            "type": "object",
            "properties": {
                "question": { "type": "string", "minLength": 1, "maxLength": MAX_QUESTION },
                "context": { "type": "string", "maxLength": MAX_CONTEXT,
                             "description": "text the answer should be based on" }
            },
            "required": ["question"],
            "additionalProperties": false
        }),
        output_schema: Some(json!({
            "type": "object",
            "properties": {
                "answer": { "type": "string" },
                "provider": { "type": "string" },
                "model": { "type": "string" },
                "input_tokens": { "type": ["integer", "null"] },
                "output_tokens": { "type": ["integer", "null"] }
            },
            "required": ["answer", "provider", "model"]
        })),
        hints: Hints {
            read_only: true,
            open_world: true,
            ..Hints::default()
        },
        scope: Some(SCOPE_TOOLS),
        paid: true,
        offered_if: Some(|config: &Config| !config.providers.is_empty()),
        outbound: true,
        cache: Some(|config: &Config| config.ask_cache),
        task: TaskSupport::Optional,
        asks_first: None,
        pure: false,
        handler: |cx, args| -> ToolFuture<'_> { Box::pin(handle(cx, args)) },
    }
}

async fn handle(cx: &ToolContext<'_>, args: serde_json::Map<String, Value>) -> ToolOutcome {
    let args = match checked(args) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let (Some(config), Some(io)) = (cx.config, cx.io) else {
        return ToolOutcome::Error("no upstream model can be reached from here".to_owned());
    };
    // The reply starts now: the client sees the first byte at once, and from here on the
    // upstream requests end when the client leaves.
    if let Some(live) = cx.live {
        live.keep_alive();
    }
    let deadline = io.now_ms().saturating_add(config.ask_timeout_ms);
    let mut failures = Vec::new();
    for setup in &config.providers {
        let name = &setup.provider.name;
        if !breakers(config, |b| b.allow(name, io.now_ms())) {
            failures.push(format!("{name}: skipped after repeated failures"));
            continue;
        }
        match provider(cx, io, setup, &args, deadline).await {
            Ok(answer) => {
                breakers(config, |b| b.success(name, io.now_ms()));
                return answer;
            }
            Err(Failure::Cancelled) => {
                cx.cancelled.set(true);
                return ToolOutcome::Cancelled;
            }
            Err(Failure::Failed { why, streamed }) => {
                breakers(config, |b| b.failure(name, io.now_ms()));
                failures.push(format!("{name}: {why}"));
                if streamed {
                    // Part of an answer reached the client: another provider's would not
                    // continue it.
                    break;
                }
            }
        }
        if io.now_ms() >= deadline {
            failures.push(format!("no answer within {} ms", config.ask_timeout_ms));
            break;
        }
    }
    if cx.live.is_some_and(|l| l.gone()) {
        cx.cancelled.set(true);
        return ToolOutcome::Cancelled;
    }
    ToolOutcome::Error(format!(
        "the upstream model is unavailable ({}); try again later",
        failures.join("; ")
    ))
}

/// The arguments, within their limits.
fn checked(args: serde_json::Map<String, Value>) -> Result<Args, ToolOutcome> {
    let args: Args = parse_args(args)?;
    if args.question.trim().is_empty() || args.question.chars().count() > MAX_QUESTION {
        return Err(ToolOutcome::Error(format!(
            "question must be 1 to {MAX_QUESTION} characters"
        )));
    }
    if args
        .context
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CONTEXT)
    {
        return Err(ToolOutcome::Error(format!(
            "context is limited to {MAX_CONTEXT} characters"
        )));
    }
    Ok(args)
}

/// Why a provider gave no answer.
enum Failure {
    Cancelled,
    /// `streamed`: part of the answer had been sent to the client.
    Failed {
        why: String,
        streamed: bool,
    },
}

/// One provider: attempts with backoff until an answer, a fatal failure or the deadline.
async fn provider(
    cx: &ToolContext<'_>,
    io: &dyn Io,
    setup: &ProviderSetup,
    args: &Args,
    deadline: u64,
) -> Result<ToolOutcome, Failure> {
    let p = &setup.provider;
    let req = p.request(
        &args.question,
        args.context.as_deref(),
        MAX_TOKENS,
        setup.api_key.as_deref().unwrap_or_default(),
    );
    let backoff = Backoff::default();
    let mut attempt = 0;
    loop {
        let remaining = deadline.saturating_sub(io.now_ms());
        if remaining == 0 {
            return Err(Failure::Failed {
                why: "out of time".to_owned(),
                streamed: false,
            });
        }
        let timeout = p.timeout_ms.map_or(remaining, |t| t.min(remaining));
        let (status, retry_after, why) = match once(cx, io, setup, &req, timeout, deadline).await {
            Once::Answer(outcome) => return Ok(outcome),
            Once::Cancelled => return Err(Failure::Cancelled),
            Once::Streamed(why) => {
                return Err(Failure::Failed {
                    why,
                    streamed: true,
                });
            }
            Once::Failed {
                status,
                retry_after,
                why,
            } => (status, retry_after, why),
        };
        let now = io.now_ms();
        match backoff.retry_delay(attempt, status, retry_after.as_deref(), now, io.random()) {
            Some(wait) if now.saturating_add(wait) < deadline => {
                io.sleep(wait).await;
                if cx.live.is_some_and(|l| l.gone()) {
                    return Err(Failure::Cancelled);
                }
                attempt += 1;
            }
            _ => {
                return Err(Failure::Failed {
                    why,
                    streamed: false,
                });
            }
        }
    }
}

/// How one attempt ended.
enum Once {
    Answer(ToolOutcome),
    Cancelled,
    /// Failed before any output: `status` `None` when no answer came.
    Failed {
        status: Option<u16>,
        retry_after: Option<String>,
        why: String,
    },
    /// Failed after output had been streamed.
    Streamed(String),
}

/// One request to a provider, its answer streamed to the client as progress.
async fn once(
    cx: &ToolContext<'_>,
    io: &dyn Io,
    setup: &ProviderSetup,
    req: &UpstreamRequest,
    timeout_ms: u64,
    deadline: u64,
) -> Once {
    let gone = || cx.live.is_some_and(|l| l.gone());
    let failed = |status, why: String| Once::Failed {
        status,
        retry_after: None,
        why,
    };
    let mut opened = match io.open(req, timeout_ms).await {
        Ok(o) => o,
        Err(OpenError::Cancelled) => return Once::Cancelled,
        Err(_) if gone() => return Once::Cancelled,
        Err(OpenError::Timeout) => {
            return failed(None, format!("no answer within {timeout_ms} ms"));
        }
        Err(OpenError::Connect(e)) => return failed(None, format!("connection failed: {e}")),
    };
    if opened.status != 200 {
        opened.body.abort();
        return Once::Failed {
            status: Some(opened.status),
            retry_after: opened.retry_after,
            why: format!("HTTP {}", opened.status),
        };
    }
    read_answer(cx, io, setup, opened, deadline).await
}

/// An answer as it arrives.
struct Answer {
    parser: StreamParser,
    text: String,
    /// Text pieces received (the progress figure).
    pieces: u64,
    spend: Spend,
    done: bool,
}

impl Answer {
    fn new(setup: &ProviderSetup) -> Self {
        Self {
            parser: StreamParser::new(setup.provider.kind),
            text: String::new(),
            pieces: 0,
            spend: Spend {
                provider: Some(setup.provider.name.clone()),
                ..Spend::default()
            },
            done: false,
        }
    }

    /// Takes the next bytes of the stream; an upstream error ends it.
    fn take(&mut self, bytes: &[u8]) -> Result<(), String> {
        for delta in self.parser.push(bytes) {
            match delta {
                Delta::Text(t) => {
                    self.text.push_str(&t);
                    self.pieces += 1;
                }
                Delta::Usage {
                    input_tokens,
                    output_tokens,
                } => {
                    self.spend.input_tokens = Some(input_tokens);
                    self.spend.output_tokens = Some(output_tokens);
                }
                Delta::Done => self.done = true,
                Delta::Error(e) => return Err(format!("upstream error: {e}")),
            }
        }
        Ok(())
    }

    /// A failure: retryable only while nothing was streamed.
    fn failed(&self, why: String) -> Once {
        if self.text.is_empty() {
            Once::Failed {
                status: None,
                retry_after: None,
                why,
            }
        } else {
            Once::Streamed(why)
        }
    }
}

/// Reads a streamed answer to its end, sending progress (at most every
/// [`PROGRESS_EVERY_MS`]) and keep-alives while it comes.
async fn read_answer(
    cx: &ToolContext<'_>,
    io: &dyn Io,
    setup: &ProviderSetup,
    mut opened: super::Opened<'_>,
    deadline: u64,
) -> Once {
    let gone = || cx.live.is_some_and(|l| l.gone());
    let p = &setup.provider;
    let mut answer = Answer::new(setup);
    let mut last_progress = 0;
    while !answer.done {
        if io.now_ms() >= deadline {
            opened.body.abort();
            return answer.failed("out of time mid-answer".to_owned());
        }
        let chunk = match opened.body.next().await {
            Ok(c) => c,
            Err(_) if gone() => return Once::Cancelled,
            Err(e) => return answer.failed(format!("connection lost: {e}")),
        };
        if gone() {
            opened.body.abort();
            return Once::Cancelled;
        }
        match chunk {
            Chunk::Idle => cx.live.into_iter().for_each(|l| l.keep_alive()),
            Chunk::End if answer.text.is_empty() => {
                return answer.failed("the answer ended empty".to_owned());
            }
            Chunk::End => answer.done = true,
            Chunk::Bytes(bytes) => {
                if let Err(why) = answer.take(&bytes) {
                    opened.body.abort();
                    return answer.failed(why);
                }
                let now = io.now_ms();
                if answer.pieces > 0 && now.saturating_sub(last_progress) >= PROGRESS_EVERY_MS {
                    last_progress = now;
                    cx.progress(answer.pieces as f64, None, Some("receiving the answer"));
                }
            }
        }
    }
    opened.body.abort();
    let result = json!({
        "answer": answer.text,
        "provider": p.name,
        "model": p.model,
        "input_tokens": answer.spend.input_tokens,
        "output_tokens": answer.spend.output_tokens,
    });
    *cx.spend.borrow_mut() = answer.spend;
    Once::Answer(ToolOutcome::Structured(result))
}

#[cfg(test)]
mod tests {
    use std::{
        cell::{Cell, RefCell},
        collections::VecDeque,
        rc::Rc,
    };

    use futures_executor::block_on;

    use super::*;
    use crate::{
        auth::principal::Principal,
        mcp::tools::{Live, LocalFuture, Opened, UpstreamBody},
        upstream::parse_providers_json,
    };

    /// What the fake upstream does for one request.
    enum Script {
        Status(u16, Option<&'static str>),
        Connect,
        /// 200, then these chunks (`None`: the connection drops).
        Stream(Vec<Option<&'static str>>),
    }

    struct FakeIo {
        now: Cell<u64>,
        scripts: RefCell<VecDeque<(&'static str, Script)>>,
        /// URLs asked, in order.
        asked: RefCell<Vec<String>>,
        slept: RefCell<Vec<u64>>,
        aborted: Rc<Cell<u32>>,
    }

    impl FakeIo {
        fn new(scripts: Vec<(&'static str, Script)>) -> Self {
            Self {
                now: Cell::new(1_000_000),
                scripts: RefCell::new(scripts.into()),
                asked: RefCell::new(Vec::new()),
                slept: RefCell::new(Vec::new()),
                aborted: Rc::new(Cell::new(0)),
            }
        }
    }

    struct FakeBody {
        chunks: VecDeque<Option<&'static str>>,
        aborted: Rc<Cell<u32>>,
        live: Option<Rc<FakeLive>>,
    }

    impl UpstreamBody for FakeBody {
        fn next(&mut self) -> LocalFuture<'_, Result<Chunk, String>> {
            let next = self.chunks.pop_front();
            if let Some(live) = &self.live {
                live.reads.set(live.reads.get() + 1);
            }
            Box::pin(async move {
                match next {
                    None => Ok(Chunk::End),
                    Some(None) => Err("connection reset".to_owned()),
                    Some(Some(s)) => Ok(Chunk::Bytes(s.as_bytes().to_vec())),
                }
            })
        }
        fn abort(&mut self) {
            self.aborted.set(self.aborted.get() + 1);
        }
    }

    thread_local! {
        static LIVE: RefCell<Option<Rc<FakeLive>>> = const { RefCell::new(None) };
    }

    impl Io for FakeIo {
        fn open<'a>(
            &'a self,
            req: &'a UpstreamRequest,
            _timeout_ms: u64,
        ) -> LocalFuture<'a, Result<Opened<'a>, OpenError>> {
            self.asked.borrow_mut().push(req.url.clone());
            let (prefix, script) = self.scripts.borrow_mut().pop_front().expect("a script");
            assert!(
                req.url.starts_with(prefix),
                "{} asked, {prefix} expected",
                req.url
            );
            let aborted = self.aborted.clone();
            let live = LIVE.with(|l| l.borrow().clone());
            Box::pin(async move {
                match script {
                    Script::Connect => Err(OpenError::Connect("refused".to_owned())),
                    Script::Status(status, retry_after) => Ok(Opened {
                        status,
                        retry_after: retry_after.map(str::to_owned),
                        body: Box::new(FakeBody {
                            chunks: VecDeque::new(),
                            aborted,
                            live,
                        }),
                    }),
                    Script::Stream(chunks) => Ok(Opened {
                        status: 200,
                        retry_after: None,
                        body: Box::new(FakeBody {
                            chunks: chunks.into(),
                            aborted,
                            live,
                        }),
                    }),
                }
            })
        }
        fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
            self.slept.borrow_mut().push(ms);
            self.now.set(self.now.get() + ms);
            Box::pin(async {})
        }
        fn now_ms(&self) -> u64 {
            // Each look at the clock moves it on, so progress throttling sees time pass.
            self.now.set(self.now.get() + 100);
            self.now.get()
        }
        fn random(&self) -> u32 {
            u32::MAX / 2
        }
        fn cache_get<'a>(&'a self, _key: &'a str) -> LocalFuture<'a, Option<String>> {
            Box::pin(async { None })
        }
        fn cache_put<'a>(&'a self, _: &'a str, _: &'a str, _: u64) -> LocalFuture<'a, ()> {
            Box::pin(async {})
        }
    }

    #[derive(Default)]
    struct FakeLive {
        sent: RefCell<Vec<Value>>,
        keep_alives: Cell<u32>,
        /// The client leaves after this many upstream reads.
        gone_after_reads: Option<u32>,
        reads: Cell<u32>,
    }

    impl Live for FakeLive {
        fn send(&self, message: &Value) -> bool {
            self.sent.borrow_mut().push(message.clone());
            !self.gone()
        }
        fn keep_alive(&self) {
            self.keep_alives.set(self.keep_alives.get() + 1);
        }
        fn gone(&self) -> bool {
            self.gone_after_reads.is_some_and(|n| self.reads.get() >= n)
        }
    }

    fn config() -> Config {
        let providers = parse_providers_json(
            r#"[{"name":"p1","kind":"openai","base_url":"http://p1.test/v1","model":"m1","key_secret":"K1"},
                {"name":"p2","kind":"openai","base_url":"http://p2.test/v1","model":"m2","key_secret":"K2"}]"#,
        )
        .unwrap();
        Config {
            providers: providers
                .into_iter()
                .map(|provider| ProviderSetup {
                    provider,
                    api_key: Some("sk".to_owned()),
                })
                .collect(),
            ..Config::default()
        }
    }

    const TOKENS: [Option<&str>; 4] = [
        Some("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"),
        Some("data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"),
        Some("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n"),
        Some("data: [DONE]\n\n"),
    ];

    fn ask(io: &FakeIo, live: Option<Rc<FakeLive>>, progress: bool) -> (ToolOutcome, Spend) {
        let principal = Principal::Anonymous {
            bucket: None,
            shared: false,
        };
        let config = config();
        LIVE.with(|l| *l.borrow_mut() = live.clone());
        let mut cx = ToolContext::new(&principal);
        cx.config = Some(&config);
        cx.io = Some(io);
        cx.live = live.as_deref().map(|l| l as &dyn Live);
        if progress {
            cx.progress_token = Some(json!("tok"));
        }
        let mut args = serde_json::Map::new();
        args.insert("question".to_owned(), json!("hi?"));
        let outcome = block_on(handle(&cx, args));
        let spend = cx.spend.take();
        (outcome, spend)
    }

    fn answer(outcome: &ToolOutcome) -> Value {
        match outcome {
            ToolOutcome::Structured(v) => v.clone(),
            ToolOutcome::Error(e) => panic!("error: {e}"),
            _ => panic!("not structured"),
        }
    }

    #[test]
    fn an_answer_streams_as_progress_and_records_its_tokens() {
        let io = FakeIo::new(vec![("http://p1.test", Script::Stream(TOKENS.to_vec()))]);
        let live = Rc::new(FakeLive::default());
        let (outcome, spend) = ask(&io, Some(live.clone()), true);
        let v = answer(&outcome);
        assert_eq!(v["answer"], "Hello");
        assert_eq!(
            (v["provider"].clone(), v["model"].clone()),
            (json!("p1"), json!("m1"))
        );
        assert_eq!(spend.input_tokens, Some(7));
        assert_eq!(spend.output_tokens, Some(2));
        assert_eq!(spend.provider.as_deref(), Some("p1"));
        let sent = live.sent.borrow();
        assert!(
            !sent.is_empty(),
            "progress went out while the answer arrived"
        );
        assert!(
            sent.iter().all(|m| m["method"] == "notifications/progress"
                && m["params"]["progressToken"] == "tok")
        );
        assert!(
            live.keep_alives.get() >= 1,
            "the stream starts before the upstream answers"
        );
    }

    #[test]
    fn no_progress_without_a_progress_token() {
        let io = FakeIo::new(vec![("http://p1.test", Script::Stream(TOKENS.to_vec()))]);
        let live = Rc::new(FakeLive::default());
        let (outcome, _) = ask(&io, Some(live.clone()), false);
        assert_eq!(answer(&outcome)["answer"], "Hello");
        assert!(live.sent.borrow().is_empty());
    }

    #[test]
    fn retryable_failures_are_retried_with_backoff_then_the_next_provider_answers() {
        let io = FakeIo::new(vec![
            ("http://p1.test", Script::Status(503, None)),
            ("http://p1.test", Script::Status(429, Some("2"))),
            ("http://p1.test", Script::Connect),
            ("http://p2.test", Script::Stream(TOKENS.to_vec())),
        ]);
        let (outcome, spend) = ask(&io, None, false);
        assert_eq!(answer(&outcome)["provider"], "p2");
        assert_eq!(spend.provider.as_deref(), Some("p2"));
        let slept = io.slept.borrow();
        assert_eq!(
            slept.len(),
            2,
            "two waits between three attempts: {slept:?}"
        );
        assert!(slept[1] >= 2_000, "Retry-After is a floor: {slept:?}");
    }

    #[test]
    fn a_fatal_status_is_not_retried_and_the_next_provider_is_tried() {
        let io = FakeIo::new(vec![
            ("http://p1.test", Script::Status(401, None)),
            ("http://p2.test", Script::Stream(TOKENS.to_vec())),
        ]);
        let (outcome, _) = ask(&io, None, false);
        assert_eq!(answer(&outcome)["provider"], "p2");
        assert!(io.slept.borrow().is_empty());
    }

    #[test]
    fn all_failing_is_a_tool_error_naming_each_provider_and_opens_the_breakers() {
        let fail = || ("http://p", Script::Status(500, None));
        // Three calls, each three attempts at each of two providers.
        let io = FakeIo::new((0..18).map(|_| fail()).collect());
        for _ in 0..3 {
            match ask(&io, None, false).0 {
                ToolOutcome::Error(e) => {
                    assert!(
                        e.contains("p1: HTTP 500") && e.contains("p2: HTTP 500"),
                        "{e}"
                    );
                }
                _ => panic!("expected a tool error"),
            }
        }
        assert_eq!(io.asked.borrow().len(), 18);
        // Both breakers are open now: the fourth call asks nobody.
        match ask(&io, None, false).0 {
            ToolOutcome::Error(e) => assert!(e.contains("skipped after repeated failures"), "{e}"),
            _ => panic!("expected a tool error"),
        }
        assert_eq!(io.asked.borrow().len(), 18, "an open breaker sends nothing");
        // After the open period, one probe goes through (half-open) and closes it.
        io.now
            .set(io.now.get() + Config::default().provider_cooldown_ms);
        io.scripts
            .borrow_mut()
            .push_back(("http://p1.test", Script::Stream(TOKENS.to_vec())));
        assert_eq!(answer(&ask(&io, None, false).0)["provider"], "p1");
    }

    #[test]
    fn a_drop_after_output_is_not_retried_elsewhere() {
        let io = FakeIo::new(vec![(
            "http://p1.test",
            Script::Stream(vec![TOKENS[0], None]),
        )]);
        let live = Rc::new(FakeLive::default());
        match ask(&io, Some(live), true).0 {
            ToolOutcome::Error(e) => assert!(e.contains("p1: connection lost"), "{e}"),
            _ => panic!("expected a tool error"),
        }
        assert_eq!(
            io.asked.borrow().len(),
            1,
            "p2 is not asked to continue an answer"
        );
    }

    #[test]
    fn a_client_that_leaves_cancels_the_call_and_aborts_the_upstream() {
        let io = FakeIo::new(vec![("http://p1.test", Script::Stream(TOKENS.to_vec()))]);
        let live = Rc::new(FakeLive {
            gone_after_reads: Some(1),
            ..FakeLive::default()
        });
        let (outcome, _) = ask(&io, Some(live), true);
        assert!(matches!(outcome, ToolOutcome::Cancelled));
        assert_eq!(io.aborted.get(), 1, "the upstream request was aborted");
    }

    #[test]
    fn arguments_are_checked_before_anything_is_sent() {
        let io = FakeIo::new(vec![]);
        let principal = Principal::Anonymous {
            bucket: None,
            shared: false,
        };
        let config = config();
        let mut cx = ToolContext::new(&principal);
        cx.config = Some(&config);
        cx.io = Some(&io);
        for args in [
            json!({}),
            json!({"question": ""}),
            json!({"question": "a", "extra": 1}),
            json!({"question": "x".repeat(MAX_QUESTION + 1)}),
        ] {
            let Value::Object(args) = args else {
                unreachable!()
            };
            assert!(matches!(block_on(handle(&cx, args)), ToolOutcome::Error(_)));
        }
        assert!(io.asked.borrow().is_empty());
    }
}
