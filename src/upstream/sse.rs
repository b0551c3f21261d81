//! Streaming answers: a Server-Sent Events decoder and the per-provider parser that turns
//! events into text, token counts and the end of the answer.
//!
//! The decoder follows the WHATWG event stream interpretation
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>)
//! and accepts bytes in chunks of any size, split anywhere: between `\r` and `\n` or inside
//! a UTF-8 sequence. One event's buffered size is capped so that a misbehaving upstream
//! cannot grow memory without bound.

use serde_json::Value;

use super::provider::ProviderKind;

/// Default cap on one event's buffered bytes (the line being read plus its data so far).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Upstream error messages passed on are cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` when absent or empty (the default type, `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why the decoder stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event grew past the cap before it ended.
    #[error("an upstream event exceeded {limit} bytes")]
    EventTooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
}

/// An incremental event stream decoder.
///
/// Fields other than `event` and `data` (`id`, `retry`) are ignored, as are comments. An
/// event not ended by a blank line when the stream ends is discarded, as the specification
/// says. After an error the decoder stays failed: every later `push` returns the error.
#[derive(Debug, Clone)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: String,
    event: String,
    /// The last chunk ended with `\r`: a `\n` opening the next one ends no further line.
    after_cr: bool,
    /// The first line has been read (a byte-order mark may open only that one).
    started: bool,
    max_event_bytes: usize,
    failed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the [`DEFAULT_MAX_EVENT_BYTES`] cap.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder refusing events larger than `max_event_bytes`.
    pub fn with_limit(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            event: String::new(),
            after_cr: false,
            started: false,
            max_event_bytes,
            failed: false,
        }
    }

    /// Feeds the next chunk and returns the events it completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let mut out = Vec::new();
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some((b'\n', tail)) = rest.split_first() {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|b| matches!(b, b'\n' | b'\r')) {
            let (head, tail) = rest.split_at(end);
            self.line.extend_from_slice(head);
            self.check_size()?;
            rest = match tail {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
            self.check_size()?;
        }
        self.line.extend_from_slice(rest);
        self.check_size()?;
        Ok(out)
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    fn check_size(&mut self) -> Result<(), SseError> {
        let buffered = self.line.len() + self.data.len() + self.event.len();
        if buffered > self.max_event_bytes {
            self.failed = true;
            self.line = Vec::new();
            self.data = String::new();
            self.event = String::new();
            return Err(self.too_large());
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        match line.first() {
            None => self.dispatch(out),
            Some(b':') => {}
            Some(_) => {
                // Field names and the delimiter are ASCII, so decoding the whole line (with
                // replacement for invalid UTF-8) is the same as decoding the stream.
                let text = String::from_utf8_lossy(line);
                let (field, value) = match text.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (&*text, ""),
                };
                match field {
                    "data" => {
                        self.data.push_str(value);
                        self.data.push('\n');
                    }
                    "event" => value.clone_into(&mut self.event),
                    _ => {}
                }
            }
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent {
            event: (!event.is_empty()).then_some(event),
            data,
        });
    }
}

/// What a streamed answer says, piece by piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// The next piece of the answer's text.
    Text(String),
    /// Token counts so far. Counts are totals, not increments: a later `Usage` replaces an
    /// earlier one.
    Usage {
        /// Tokens of the prompt.
        input_tokens: u64,
        /// Tokens of the answer so far.
        output_tokens: u64,
    },
    /// The answer is complete.
    Done,
    /// The upstream reported an error, or sent something unreadable. The stream should be
    /// abandoned.
    Error(String),
}

/// Turns one provider's event stream into [`Delta`]s.
///
/// Events of types this parser does not know are skipped, as both providers ask of
/// clients; so are non-text content (tool calls, thinking) and empty text pieces.
#[derive(Debug, Clone)]
pub struct StreamParser {
    kind: ProviderKind,
    decoder: SseDecoder,
    input_tokens: u64,
    output_tokens: u64,
}

impl StreamParser {
    /// A parser for `kind`'s stream format, decoding with the default event size cap.
    pub fn new(kind: ProviderKind) -> Self {
        Self::with_decoder(kind, SseDecoder::new())
    }

    /// A parser for `kind` over a given decoder (for another size cap).
    pub fn with_decoder(kind: ProviderKind, decoder: SseDecoder) -> Self {
        Self {
            kind,
            decoder,
            input_tokens: 0,
            output_tokens: 0,
        }
    }

    /// Feeds the next chunk of the response body. A decoder failure becomes
    /// [`Delta::Error`].
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Delta> {
        match self.decoder.push(bytes) {
            Ok(events) => events.iter().flat_map(|e| self.event(e)).collect(),
            Err(e) => vec![Delta::Error(e.to_string())],
        }
    }

    /// The deltas one decoded event carries (often none, sometimes several).
    pub fn event(&mut self, event: &SseEvent) -> Vec<Delta> {
        if self.kind == ProviderKind::OpenAi && event.data.trim() == "[DONE]" {
            return vec![Delta::Done];
        }
        let json: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => return vec![Delta::Error(format!("upstream sent malformed JSON: {e}"))],
        };
        match self.kind {
            ProviderKind::OpenAi => self.openai(event.event.as_deref(), &json),
            ProviderKind::Anthropic => self.anthropic(event.event.as_deref(), &json),
        }
    }

    fn openai(&mut self, event: Option<&str>, json: &Value) -> Vec<Delta> {
        if let Some(error) = json.get("error").filter(|e| !e.is_null()) {
            return vec![Delta::Error(error_message(error))];
        }
        if event == Some("error") {
            return vec![Delta::Error(error_message(json))];
        }
        let mut out = Vec::new();
        let choices = json.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            // Only one answer is asked for; other choices would interleave with it.
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let text = choice.pointer("/delta/content").and_then(Value::as_str);
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                out.push(Delta::Text(text.to_owned()));
            }
        }
        if let Some(usage) = json.get("usage").filter(|u| u.is_object()) {
            self.input_tokens = count(usage, "prompt_tokens").unwrap_or(self.input_tokens);
            self.output_tokens = count(usage, "completion_tokens").unwrap_or(self.output_tokens);
            out.push(self.usage());
        }
        out
    }

    fn anthropic(&mut self, event: Option<&str>, json: &Value) -> Vec<Delta> {
        let kind = json.get("type").and_then(Value::as_str).or(event);
        match kind {
            Some("message_start") => {
                let usage = json.pointer("/message/usage");
                self.input_tokens = usage
                    .and_then(|u| count(u, "input_tokens"))
                    .unwrap_or(self.input_tokens);
                self.output_tokens = usage
                    .and_then(|u| count(u, "output_tokens"))
                    .unwrap_or(self.output_tokens);
                vec![self.usage()]
            }
            Some("content_block_delta") => {
                let delta = json.get("delta");
                let is_text = delta
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| t == "text_delta");
                if !is_text {
                    return Vec::new();
                }
                match delta.and_then(|d| d.get("text")).and_then(Value::as_str) {
                    Some("") => Vec::new(),
                    Some(text) => vec![Delta::Text(text.to_owned())],
                    None => vec![Delta::Error(
                        "upstream sent a text delta without text".to_owned(),
                    )],
                }
            }
            Some("message_delta") => {
                let Some(usage) = json.get("usage") else {
                    return Vec::new();
                };
                // Newer API versions repeat input_tokens here (cumulative); older ones
                // report it only in message_start.
                self.input_tokens = count(usage, "input_tokens").unwrap_or(self.input_tokens);
                self.output_tokens = count(usage, "output_tokens").unwrap_or(self.output_tokens);
                vec![self.usage()]
            }
            Some("message_stop") => vec![Delta::Done],
            Some("error") => {
                let error = json.get("error").unwrap_or(json);
                vec![Delta::Error(error_message(error))]
            }
            _ => Vec::new(),
        }
    }

    fn usage(&self) -> Delta {
        Delta::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }
}

fn count(usage: &Value, field: &str) -> Option<u64> {
    usage.get(field).and_then(Value::as_u64)
}

/// `type: message` from an error object (either provider's shape), cut to a bounded length.
fn error_message(error: &Value) -> String {
    let text = |k: &str| {
        error
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let message = match (text("type"), text("message")) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (None, Some(m)) => m.to_owned(),
        (Some(t), None) => t.to_owned(),
        (None, None) => match error.as_str() {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => "upstream reported an error".to_owned(),
        },
    };
    message.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn decode(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        chunks.iter().flat_map(|c| d.push(c).unwrap()).collect()
    }

    #[test]
    fn events_end_at_blank_lines_and_join_data_lines() {
        let got = decode(&[b"event: greet\ndata: hello\ndata:  world\n\ndata:x\n\n"]);
        assert_eq!(
            got,
            vec![ev(Some("greet"), "hello\n world"), ev(None, "x")],
            "one space after the colon is dropped, a second one kept"
        );
    }

    #[test]
    fn all_three_line_endings_are_accepted() {
        let want = vec![ev(None, "a"), ev(Some("e"), "b")];
        assert_eq!(
            decode(&[b"data: a\r\n\r\nevent: e\r\ndata: b\r\n\r\n"]),
            want
        );
        assert_eq!(decode(&[b"data: a\r\revent: e\rdata: b\r\r"]), want);
        assert_eq!(decode(&[b"data: a\n\nevent: e\r\ndata: b\r\r"]), want);
    }

    #[test]
    fn comments_unknown_fields_and_dataless_events_dispatch_nothing() {
        let got = decode(&[b": keep-alive\n\nid: 7\nretry: 10\n\nevent: ping\n\n:x\ndata\n\n"]);
        assert_eq!(got, vec![ev(None, "")], "a bare `data` line is empty data");
        assert!(decode(&[b"\n\n\n"]).is_empty());
        assert_eq!(
            decode(&[b"event: a\n\ndata: 1\n\n"]),
            vec![ev(None, "1")],
            "the event type is reset by a blank line even without data"
        );
        assert_eq!(
            decode(&[b"event:\ndata: z\n\n"]),
            vec![ev(None, "z")],
            "an empty event type is the default"
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped_once() {
        assert_eq!(
            decode(&[b"\xEF\xBB", b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n"]),
            vec![ev(None, "a")],
            "a second BOM is part of an unknown field name"
        );
    }

    #[test]
    fn an_unterminated_event_is_discarded() {
        assert_eq!(decode(&[b"data: a\n\ndata: b\n"]), vec![ev(None, "a")]);
        assert_eq!(decode(&[b"data: a\n\ndata: b"]), vec![ev(None, "a")]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(
            decode(&[b"data: a\xFFb\xE2\x82\n\n"]),
            vec![ev(None, "a\u{FFFD}b\u{FFFD}")]
        );
    }

    const SAMPLE: &[u8] = "\u{FEFF}: hi\r\nevent: one\r\ndata: caf\u{e9} \u{1F600}\r\n\
        data: second\r\n\r\ndata:x\rdata: \u{4e2d}\u{6587}\r\r\
        event: two\ndata: {\"a\":1}\n\n:tail\n\ndata: unfinished"
        .as_bytes();

    fn sample_events() -> Vec<SseEvent> {
        vec![
            ev(Some("one"), "caf\u{e9} \u{1F600}\nsecond"),
            ev(None, "x\n\u{4e2d}\u{6587}"),
            ev(Some("two"), "{\"a\":1}"),
        ]
    }

    #[test]
    fn splitting_a_stream_at_any_byte_gives_the_same_events() {
        assert_eq!(decode(&[SAMPLE]), sample_events());
        for i in 0..=SAMPLE.len() {
            let (a, b) = SAMPLE.split_at(i);
            assert_eq!(decode(&[a, b]), sample_events(), "split at {i}");
            for j in i..=SAMPLE.len() {
                let (b1, b2) = b.split_at(j - i);
                assert_eq!(decode(&[a, b1, b2]), sample_events(), "split at {i}, {j}");
            }
        }
        let bytes: Vec<&[u8]> = SAMPLE.chunks(1).collect();
        assert_eq!(decode(&bytes), sample_events());
        let with_empty: Vec<&[u8]> = SAMPLE.chunks(3).flat_map(|c| [c, &[][..]]).collect();
        assert_eq!(decode(&with_empty), sample_events());
    }

    #[test]
    fn a_cr_at_a_chunk_end_waits_for_the_next_chunk() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"data: a\r").unwrap().is_empty());
        assert!(d.push(b"").unwrap().is_empty());
        assert_eq!(
            d.push(b"\n").unwrap(),
            Vec::new(),
            "CRLF is one line ending"
        );
        assert_eq!(d.push(b"\r\n").unwrap(), vec![ev(None, "a")]);
    }

    #[test]
    fn an_oversized_event_fails_and_the_decoder_stays_failed() {
        let mut d = SseDecoder::with_limit(16);
        assert_eq!(d.push(b"data: 0123456789\n").unwrap(), Vec::new());
        assert_eq!(
            d.push(b"data: 0123456789\n"),
            Err(SseError::EventTooLarge { limit: 16 })
        );
        assert_eq!(
            d.push(b"\n"),
            Err(SseError::EventTooLarge { limit: 16 }),
            "sticky"
        );

        // One long line without an end fails as soon as it passes the cap.
        let mut d = SseDecoder::with_limit(16);
        assert!(d.push(b"data: 01234").is_ok());
        assert!(d.push(b"567890123").is_err());

        // A long comment is also buffered while it is read.
        let mut d = SseDecoder::with_limit(16);
        assert!(d.push(b": 0123456789abcdefgh\n").is_err());

        // Many events, each under the cap, are fine however long the stream.
        let mut d = SseDecoder::with_limit(16);
        for _ in 0..1000 {
            assert_eq!(
                d.push(b"data: 0123456\n\n").unwrap(),
                vec![ev(None, "0123456")]
            );
        }
    }

    const OPENAI: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \u{1F30D}\"},\"finish_reason\":null}]}\n\n\
        : processing\n\n\
        data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n\
        data: [DONE]\n\n";

    const ANTHROPIC: &str = "event: message_start\r\n\
        data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n\
        event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
        event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n\
        event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\r\n\r\n\
        event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo \u{1F30D}\"}}\r\n\r\n\
        event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\r\n\r\n\
        event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n\
        event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n\
        event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

    fn text(s: &str) -> Delta {
        Delta::Text(s.to_owned())
    }

    fn parse_all(kind: ProviderKind, chunks: &[&[u8]]) -> Vec<Delta> {
        let mut p = StreamParser::new(kind);
        chunks.iter().flat_map(|c| p.push(c)).collect()
    }

    #[test]
    fn openai_streams_yield_text_usage_and_done() {
        assert_eq!(
            parse_all(ProviderKind::OpenAi, &[OPENAI.as_bytes()]),
            vec![
                text("Hel"),
                text("lo \u{1F30D}"),
                Delta::Usage {
                    input_tokens: 12,
                    output_tokens: 3
                },
                Delta::Done
            ]
        );
    }

    #[test]
    fn anthropic_streams_yield_text_cumulative_usage_and_done() {
        assert_eq!(
            parse_all(ProviderKind::Anthropic, &[ANTHROPIC.as_bytes()]),
            vec![
                Delta::Usage {
                    input_tokens: 25,
                    output_tokens: 1
                },
                text("Hel"),
                text("lo \u{1F30D}"),
                Delta::Usage {
                    input_tokens: 25,
                    output_tokens: 15
                },
                Delta::Done
            ]
        );
    }

    #[test]
    fn provider_streams_split_at_any_byte_give_the_same_deltas() {
        for (kind, stream) in [
            (ProviderKind::OpenAi, OPENAI.as_bytes()),
            (ProviderKind::Anthropic, ANTHROPIC.as_bytes()),
        ] {
            let whole = parse_all(kind, &[stream]);
            assert!(whole.len() >= 4);
            for i in 0..=stream.len() {
                let (a, b) = stream.split_at(i);
                assert_eq!(parse_all(kind, &[a, b]), whole, "{kind:?} split at {i}");
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(parse_all(kind, &bytes), whole, "{kind:?} byte by byte");
        }
    }

    #[test]
    fn malformed_json_becomes_an_error_delta() {
        for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            let mut p = StreamParser::new(kind);
            for data in ["{\"choices\":[", "not json", "", "[DONE"] {
                let got = p.event(&ev(None, data));
                assert!(
                    matches!(got.as_slice(), [Delta::Error(m)] if m.contains("malformed")),
                    "{kind:?} {data:?}: {got:?}"
                );
            }
        }
        // Anthropic has no [DONE] sentinel.
        let got = StreamParser::new(ProviderKind::Anthropic).event(&ev(None, "[DONE]"));
        assert!(matches!(got.as_slice(), [Delta::Error(_)]));
    }

    #[test]
    fn unexpected_shapes_are_skipped_without_panicking() {
        let mut p = StreamParser::new(ProviderKind::OpenAi);
        for data in [
            "null",
            "42",
            "[]",
            "{}",
            "{\"choices\":{}}",
            "{\"choices\":[null,1,{\"delta\":null}]}",
            "{\"choices\":[{\"delta\":{\"content\":7}}]}",
            "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}}]}",
            "{\"usage\":null}",
        ] {
            assert_eq!(p.event(&ev(None, data)), Vec::new(), "{data}");
        }
        let mut p = StreamParser::new(ProviderKind::Anthropic);
        for data in [
            "{}",
            "{\"type\":\"future_event\"}",
            "{\"type\":\"content_block_delta\"}",
            "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}}",
            "{\"type\":\"message_delta\"}",
            "{\"type\":7}",
        ] {
            assert_eq!(p.event(&ev(None, data)), Vec::new(), "{data}");
        }
        let got = p.event(&ev(
            None,
            "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":null}}",
        ));
        assert!(matches!(got.as_slice(), [Delta::Error(_)]), "{got:?}");
        // message_start without usage reports zeros rather than failing.
        assert_eq!(
            p.event(&ev(None, "{\"type\":\"message_start\",\"message\":{}}")),
            vec![Delta::Usage {
                input_tokens: 0,
                output_tokens: 0
            }]
        );
    }

    #[test]
    fn upstream_errors_become_error_deltas_with_their_message() {
        let mut p = StreamParser::new(ProviderKind::Anthropic);
        assert_eq!(
            p.push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"),
            vec![Delta::Error("overloaded_error: Overloaded".to_owned())]
        );
        let mut p = StreamParser::new(ProviderKind::OpenAi);
        assert_eq!(
            p.push(
                b"data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}\n\n"
            ),
            vec![Delta::Error("requests: Rate limit reached".to_owned())]
        );
        assert_eq!(
            p.push(b"event: error\ndata: {\"message\":\"boom\"}\n\n"),
            vec![Delta::Error("boom".to_owned())]
        );
        let long = format!(
            "data: {{\"error\":{{\"message\":\"{}\"}}}}\n\n",
            "x".repeat(5000)
        );
        match p.push(long.as_bytes()).as_slice() {
            [Delta::Error(m)] => assert_eq!(m.chars().count(), MAX_ERROR_CHARS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_decoder_failure_becomes_an_error_delta() {
        let mut p = StreamParser::with_decoder(ProviderKind::OpenAi, SseDecoder::with_limit(32));
        let got = p.push(format!("data: {}\n", "y".repeat(64)).as_bytes());
        assert!(
            matches!(got.as_slice(), [Delta::Error(m)] if m.contains("exceeded 32 bytes")),
            "{got:?}"
        );
    }
}
