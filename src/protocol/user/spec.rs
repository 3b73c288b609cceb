//! The dialect file's format (TOML, read with serde) and its validation into a [`Spec`]: every
//! check a file must pass before its dialect is registered, each failure named by file, line
//! and field ([`LoadError`]). The format is documented in README.md ("Dialects from a file")
//! and by the commented example `assets/dialects/acme.toml`.

use std::ops::Range;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::error::LoadError;
use super::template::{Field, PayloadTemplate, TopicTemplate, leak};
use crate::i18n::tr;
use crate::protocol::json_template::sample_values;
use crate::protocol::{ErrorCode, ErrorTable, FailureValues, KeySource};

// ---------------------------------------------------------------- the file, as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    dialect: DialectToml,
    device: DeviceToml,
    announce: AnnounceToml,
    notice: NoticeToml,
    progress: ProgressToml,
    pull: Option<PullToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DialectToml {
    prefix: Spanned<String>,
    label: Spanned<String>,
    #[serde(default)]
    task_key: TaskKeyToml,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TaskKeyToml {
    #[default]
    None,
    Counter,
    Uuid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceToml {
    key: Option<Spanned<String>>,
    name: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenToml {
    pointer: Spanned<String>,
    equals: Spanned<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnounceToml {
    topic: Spanned<String>,
    when: Option<WhenToml>,
    version: Spanned<String>,
    module: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeToml {
    topic: Spanned<String>,
    payload: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressToml {
    topic: Spanned<String>,
    when: Option<WhenToml>,
    percent: Option<Spanned<String>>,
    task: Option<Spanned<String>>,
    module: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
    failure: FailureToml,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureToml {
    field: Spanned<String>,
    #[serde(default)]
    failing: Failing,
    codes: Spanned<Vec<CodeToml>>,
    unknown: Option<Spanned<String>>,
}

/// Which values of the failure field report a failure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Failing {
    /// Only the values listed in `codes`.
    #[default]
    Listed,
    /// Listed values and any negative number.
    Negative,
    /// Listed values and any number but 0.
    NonZero,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeToml {
    value: Spanned<Value>,
    code: Option<i64>,
    text: Spanned<String>,
    /// Which of the simulator's faults this value reports (see [`SimFault`]).
    sim: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullToml {
    topic: Spanned<String>,
    when: Option<WhenToml>,
    id: Option<Spanned<String>>,
    module: Option<Spanned<String>>,
    reply_topic: Option<Spanned<String>>,
    reply: Option<Spanned<String>>,
    nothing: Option<Spanned<String>>,
}

// ---------------------------------------------------------------- the file, validated

/// A JSON pointer (RFC 6901) into a device's message.
pub(super) type Pointer = &'static str;

/// A message kind applies only when the value at `pointer` equals `equals` (for kinds sharing a
/// topic).
#[derive(Debug, Clone)]
pub(super) struct When {
    pub pointer: Pointer,
    pub equals: Value,
}

impl When {
    pub fn holds(&self, message: &Value) -> bool {
        message.pointer(self.pointer) == Some(&self.equals)
    }
}

#[derive(Debug)]
pub(super) struct Announce {
    pub topic: TopicTemplate,
    pub when: Option<When>,
    pub version: Pointer,
    pub module: Option<Pointer>,
}

#[derive(Debug)]
pub(super) struct NoticeSpec {
    pub topic: TopicTemplate,
    pub payload: PayloadTemplate,
}

#[derive(Debug)]
pub(super) struct Progress {
    pub topic: TopicTemplate,
    pub when: Option<When>,
    pub percent: Option<Pointer>,
    pub task: Option<Pointer>,
    pub module: Option<Pointer>,
    pub text: Option<Pointer>,
    pub failure: FailureSpec,
}

#[derive(Debug)]
pub(super) struct FailureSpec {
    pub field: Pointer,
    pub failing: Failing,
    /// Value of the field → code in the error table.
    pub codes: Vec<(Value, i64)>,
    /// The value a simulated device reports for each of its faults the file names (`sim = …`).
    pub sim: Vec<(SimFault, Value)>,
}

/// A simulated device's failure, as a code of the file names it (`sim = "download"`): the
/// console never reads this, only the file's simulated devices (`sim.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SimFault {
    /// The download broke off (`ota-console sim --fail-download`).
    Download,
    /// The image's size or a digest did not match the notice (`--fail-verify`).
    Verify,
    /// Writing the image failed (`--fail-flash`).
    Flash,
}

impl SimFault {
    const ALL: [(&'static str, SimFault); 3] = [
        ("download", SimFault::Download),
        ("verify", SimFault::Verify),
        ("flash", SimFault::Flash),
    ];
}

#[derive(Debug)]
pub(super) struct PullSpec {
    pub topic: TopicTemplate,
    pub when: Option<When>,
    pub id: Option<Pointer>,
    pub module: Option<Pointer>,
    pub reply_topic: TopicTemplate,
    pub reply: PayloadTemplate,
    /// The "nothing pending" reply; `None`: the dialect stays silent.
    pub nothing: Option<PayloadTemplate>,
}

/// A validated dialect file.
#[derive(Debug)]
pub(super) struct Spec {
    pub prefix: &'static str,
    pub label: &'static str,
    /// The names of the id's parts: `(Some(key), name)` or `(None, name)`.
    pub key_name: Option<&'static str>,
    pub name_name: &'static str,
    pub task_key: KeySource,
    pub announce: Announce,
    pub notice: NoticeSpec,
    pub progress: Progress,
    pub pull: Option<PullSpec>,
    pub errors: &'static ErrorTable,
    /// Where each topic template was written, for errors found at registration.
    pub topic_lines: Vec<(&'static str, String, usize)>,
}

impl Spec {
    /// The uplink topic templates (what the console subscribes to).
    pub fn uplinks(&self) -> Vec<&TopicTemplate> {
        let mut out = vec![&self.announce.topic, &self.progress.topic];
        if let Some(p) = &self.pull {
            out.push(&p.topic);
        }
        dedup(out)
    }

    /// The downlink topic templates (what devices subscribe to).
    pub fn downlinks(&self) -> Vec<&TopicTemplate> {
        let mut out = vec![&self.notice.topic];
        if let Some(p) = &self.pull {
            out.push(&p.reply_topic);
        }
        dedup(out)
    }
}

fn dedup(list: Vec<&TopicTemplate>) -> Vec<&TopicTemplate> {
    let mut out: Vec<&TopicTemplate> = Vec::new();
    for t in list {
        if !out.iter().any(|o| o.text == t.text) {
            out.push(t);
        }
    }
    out
}

// ---------------------------------------------------------------- checks

/// Where errors point: the file's name and text.
pub(super) struct Ctx<'a> {
    pub file: &'a str,
    pub src: &'a str,
}

impl Ctx<'_> {
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.src.len());
        self.src
            .get(..end)
            .map_or(1, |s| s.matches('\n').count() + 1)
    }

    pub fn err(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(span.start),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A serde/TOML error: its line from the span, its field from the key path toml reports.
    fn toml_err(&self, mut e: toml::de::Error) -> LoadError {
        let line = e.span().map_or(1, |s| self.line_of(s.start));
        // Without its input the error's text is the message and, on a second line, "in `a.b`".
        e.set_input(None);
        let text = e.to_string();
        let mut lines = text.lines();
        let message = lines.next().unwrap_or_default().trim().to_owned();
        let keys = lines
            .find_map(|l| l.trim().strip_prefix("in `")?.strip_suffix('`'))
            .map(str::to_owned);
        // A missing field has no line of its own: name it under the table it is missing from.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let field = match (missing, keys) {
            (Some(m), Some(k)) => format!("{k}.{m}"),
            (Some(m), None) => m.to_owned(),
            (None, Some(k)) => k,
            (None, None) => field_on_line(self.src, line),
        };
        LoadError::Invalid {
            file: self.file.to_owned(),
            line,
            field,
            message,
        }
    }
}

/// The `key` of a `key = value` line, or the `[table]` a header line names.
fn field_on_line(src: &str, line: usize) -> String {
    let text = src.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    // Key and header lines hold no `#` before their comment.
    let text = text.split('#').next().unwrap_or_default().trim();
    if let Some(table) = text.strip_prefix('[') {
        return table.trim_matches(['[', ']']).trim().to_owned();
    }
    text.split_once('=')
        .map(|(k, _)| k.trim().to_owned())
        .unwrap_or_else(|| "(file)".to_owned())
}

fn pointer(ctx: &Ctx, field: &str, p: &Spanned<String>) -> Result<Pointer, LoadError> {
    let text = p.get_ref();
    if !text.starts_with('/') || text.len() > 200 {
        return Err(ctx.err(
            p.span(),
            field,
            tr!("error.dialect_file.pointer", text = format!("{text:?}")),
        ));
    }
    Ok(leak(text))
}

fn opt_pointer(
    ctx: &Ctx,
    field: &str,
    p: &Option<Spanned<String>>,
) -> Result<Option<Pointer>, LoadError> {
    p.as_ref().map(|p| pointer(ctx, field, p)).transpose()
}

fn topic(
    ctx: &Ctx,
    field: &str,
    t: &Spanned<String>,
    has_key: bool,
) -> Result<TopicTemplate, LoadError> {
    TopicTemplate::parse(t.get_ref(), has_key).map_err(|m| ctx.err(t.span(), field, m))
}

fn when(ctx: &Ctx, field: &str, w: &Option<WhenToml>) -> Result<Option<When>, LoadError> {
    let Some(w) = w else { return Ok(None) };
    let pointer = pointer(ctx, &format!("{field}.pointer"), &w.pointer)?;
    let equals = w.equals.get_ref().clone();
    if !matches!(equals, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
        return Err(ctx.err(
            w.equals.span(),
            &format!("{field}.equals"),
            tr!("error.dialect_file.scalar"),
        ));
    }
    Ok(Some(When { pointer, equals }))
}

fn segment_name(ctx: &Ctx, field: &str, s: &Spanned<String>) -> Result<&'static str, LoadError> {
    let v = s.get_ref().trim();
    if v.is_empty() || v.len() > 32 || v.contains(['{', '}']) {
        return Err(ctx.err(s.span(), field, tr!("error.dialect_file.segment_name")));
    }
    Ok(leak(v))
}

/// Parses and validates a dialect file (all but the checks that need the dialect registered:
/// its samples decoding, its topics against other dialects'; see `mod.rs`).
pub(super) fn parse(ctx: &Ctx) -> Result<Spec, LoadError> {
    let file: FileToml = toml::from_str(ctx.src).map_err(|e| ctx.toml_err(e))?;
    let (prefix, label) = identity(ctx, &file.dialect)?;
    let task_key = match file.dialect.task_key {
        TaskKeyToml::None => KeySource::None,
        TaskKeyToml::Counter => KeySource::Counter,
        TaskKeyToml::Uuid => KeySource::Uuid,
    };
    let key_name = file
        .device
        .key
        .as_ref()
        .map(|k| segment_name(ctx, "device.key", k))
        .transpose()?;
    let name_name = segment_name(ctx, "device.name", &file.device.name)?;
    let shape = Shape {
        has_key: key_name.is_some(),
        task_key,
    };

    let a = &file.announce;
    let announce = Announce {
        topic: topic(ctx, "announce.topic", &a.topic, shape.has_key)?,
        when: when(ctx, "announce.when", &a.when)?,
        version: pointer(ctx, "announce.version", &a.version)?,
        module: opt_pointer(ctx, "announce.module", &a.module)?,
    };
    let notice = notice(ctx, &file.notice, shape)?;
    let (progress, errors) = progress(ctx, &file.progress, shape)?;
    let pull = file
        .pull
        .as_ref()
        .map(|pl| pull(ctx, pl, shape, &notice))
        .transpose()?;

    // Kinds sharing a topic are told apart by `when`.
    let mut kinds: Vec<Kind> = vec![
        ("announce", &announce.topic, &announce.when, a.topic.span()),
        (
            "progress",
            &progress.topic,
            &progress.when,
            file.progress.topic.span(),
        ),
    ];
    if let (Some(ps), Some(pl)) = (&pull, &file.pull) {
        kinds.push(("pull", &ps.topic, &ps.when, pl.topic.span()));
    }
    shared_topics_told_apart(ctx, &kinds)?;

    Ok(Spec {
        prefix,
        label,
        key_name,
        name_name,
        task_key,
        announce,
        notice,
        progress,
        pull,
        errors,
        topic_lines: topic_lines(ctx, &file),
    })
}

/// What every part of the file is checked against: the id's shape and the task key.
#[derive(Clone, Copy)]
struct Shape {
    has_key: bool,
    task_key: KeySource,
}

/// A kind of uplink message: its name, topic, `when` and where its topic is written.
type Kind<'a> = (
    &'static str,
    &'a TopicTemplate,
    &'a Option<When>,
    Range<usize>,
);

fn identity(ctx: &Ctx, d: &DialectToml) -> Result<(&'static str, &'static str), LoadError> {
    let prefix = d.prefix.get_ref();
    let good_prefix = prefix.len() <= 32
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !good_prefix {
        return Err(ctx.err(
            d.prefix.span(),
            "dialect.prefix",
            tr!("error.dialect_file.prefix", prefix = format!("{prefix:?}")),
        ));
    }
    let label = d.label.get_ref().trim();
    if label.is_empty() || label.chars().count() > 64 {
        return Err(ctx.err(
            d.label.span(),
            "dialect.label",
            tr!("error.dialect_file.label"),
        ));
    }
    Ok((leak(prefix), leak(label)))
}

fn notice(ctx: &Ctx, n: &NoticeToml, shape: Shape) -> Result<NoticeSpec, LoadError> {
    let topic = topic(ctx, "notice.topic", &n.topic, shape.has_key)?;
    let payload = payload(ctx, "notice.payload", &n.payload, shape, true)?;
    for needed in [Field::Url, Field::Version] {
        if !payload.uses(needed) {
            return Err(ctx.err(
                n.payload.span(),
                "notice.payload",
                tr!(
                    "error.dialect_file.must_carry",
                    field = format!("{{{{{}}}}}", needed.name())
                ),
            ));
        }
    }
    if shape.task_key != KeySource::None && !payload.uses(Field::TaskId) {
        return Err(ctx.err(
            n.payload.span(),
            "notice.payload",
            tr!("error.dialect_file.notice_task_id"),
        ));
    }
    Ok(NoticeSpec { topic, payload })
}

fn progress(
    ctx: &Ctx,
    p: &ProgressToml,
    shape: Shape,
) -> Result<(Progress, &'static ErrorTable), LoadError> {
    let f = &p.failure;
    let failure_field = pointer(ctx, "progress.failure.field", &f.field)?;
    let percent = opt_pointer(ctx, "progress.percent", &p.percent)?;
    if percent == Some(failure_field) && f.failing == Failing::NonZero {
        return Err(ctx.err(
            f.field.span(),
            "progress.failure.failing",
            tr!("error.dialect_file.nonzero_percent"),
        ));
    }
    let task = opt_pointer(ctx, "progress.task", &p.task)?;
    if shape.task_key != KeySource::None && task.is_none() {
        return Err(ctx.err(
            p.topic.span(),
            "progress.task",
            tr!("error.dialect_file.progress_task"),
        ));
    }
    let (codes, sim, errors) = failure_codes(ctx, f)?;
    let progress = Progress {
        topic: topic(ctx, "progress.topic", &p.topic, shape.has_key)?,
        when: when(ctx, "progress.when", &p.when)?,
        percent,
        task,
        module: opt_pointer(ctx, "progress.module", &p.module)?,
        text: opt_pointer(ctx, "progress.text", &p.text)?,
        failure: FailureSpec {
            field: failure_field,
            failing: f.failing,
            codes,
            sim,
        },
    };
    Ok((progress, errors))
}

fn pull(
    ctx: &Ctx,
    pl: &PullToml,
    shape: Shape,
    notice: &NoticeSpec,
) -> Result<PullSpec, LoadError> {
    let reply_topic = match &pl.reply_topic {
        Some(t) => topic(ctx, "pull.reply_topic", t, shape.has_key)?,
        None => notice.topic.clone(),
    };
    let reply = match &pl.reply {
        Some(r) => payload(ctx, "pull.reply", r, shape, true)?,
        None => notice.payload.clone(),
    };
    let nothing = pl
        .nothing
        .as_ref()
        .map(|r| payload(ctx, "pull.nothing", r, shape, false))
        .transpose()?;
    Ok(PullSpec {
        topic: topic(ctx, "pull.topic", &pl.topic, shape.has_key)?,
        when: when(ctx, "pull.when", &pl.when)?,
        id: opt_pointer(ctx, "pull.id", &pl.id)?,
        module: opt_pointer(ctx, "pull.module", &pl.module)?,
        reply_topic,
        reply,
        nothing,
    })
}

fn shared_topics_told_apart(ctx: &Ctx, kinds: &[Kind]) -> Result<(), LoadError> {
    for (i, (name, t, w, span)) in kinds.iter().enumerate() {
        for (other, ot, ow, _) in kinds.iter().take(i) {
            if t.text != ot.text {
                continue;
            }
            let distinct = match (w, ow) {
                (Some(w), Some(ow)) => w.pointer != ow.pointer || w.equals != ow.equals,
                _ => false,
            };
            if !distinct {
                return Err(ctx.err(
                    span.clone(),
                    &format!("{name}.when"),
                    tr!(
                        "error.dialect_file.shared_topic",
                        name = name,
                        other = other,
                        topic = format!("{:?}", t.text)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Where each topic template is written, for errors found later (at registration).
fn topic_lines(ctx: &Ctx, file: &FileToml) -> Vec<(&'static str, String, usize)> {
    let mut topics = vec![
        ("announce.topic", &file.announce.topic),
        ("notice.topic", &file.notice.topic),
        ("progress.topic", &file.progress.topic),
    ];
    if let Some(pl) = &file.pull {
        topics.push(("pull.topic", &pl.topic));
        if let Some(t) = &pl.reply_topic {
            topics.push(("pull.reply_topic", t));
        }
    }
    topics
        .into_iter()
        .map(|(field, t)| (field, t.get_ref().clone(), ctx.line_of(t.span().start)))
        .collect()
}

/// Value of the failure field → code, the values the simulator reports, and the error table.
type FailureCodes = (
    Vec<(Value, i64)>,
    Vec<(SimFault, Value)>,
    &'static ErrorTable,
);

fn failure_codes(ctx: &Ctx, f: &FailureToml) -> Result<FailureCodes, LoadError> {
    if f.codes.get_ref().is_empty() {
        return Err(ctx.err(
            f.codes.span(),
            "progress.failure.codes",
            tr!("error.dialect_file.no_codes"),
        ));
    }
    let mut codes: Vec<(Value, i64)> = Vec::new();
    let mut table: Vec<ErrorCode> = Vec::new();
    let mut sim: Vec<(SimFault, Value)> = Vec::new();
    for (i, c) in f.codes.get_ref().iter().enumerate() {
        let at = |what: &str| format!("progress.failure.codes[{i}].{what}");
        let value = c.value.get_ref().clone();
        let code = match (&value, c.code) {
            (_, Some(code)) => code,
            (Value::Number(n), None) => n.as_i64().ok_or_else(|| {
                ctx.err(
                    c.value.span(),
                    &at("value"),
                    tr!("error.dialect_file.integer"),
                )
            })?,
            (Value::String(_), None) => {
                return Err(ctx.err(
                    c.value.span(),
                    &at("code"),
                    tr!("error.dialect_file.text_needs_code"),
                ));
            }
            _ => {
                return Err(ctx.err(
                    c.value.span(),
                    &at("value"),
                    tr!("error.dialect_file.integer_or_text"),
                ));
            }
        };
        if !matches!(value, Value::Number(_) | Value::String(_)) {
            return Err(ctx.err(
                c.value.span(),
                &at("value"),
                tr!("error.dialect_file.integer_or_text"),
            ));
        }
        let text = c.text.get_ref().trim();
        if text.is_empty() || text.contains(['{', '}']) {
            return Err(ctx.err(
                c.text.span(),
                &at("text"),
                tr!("error.dialect_file.code_text"),
            ));
        }
        if codes.iter().any(|(v, _)| *v == value) || table.iter().any(|e| e.code == code) {
            return Err(ctx.err(
                c.value.span(),
                &at("value"),
                tr!(
                    "error.dialect_file.listed_twice",
                    value = value,
                    code = code
                ),
            ));
        }
        if let Some(fault) = sim_fault(ctx, c, &sim, &at("sim"))? {
            sim.push((fault, value.clone()));
        }
        codes.push((value, code));
        table.push(ErrorCode {
            code,
            text: leak(text),
        });
    }
    let unknown = match &f.unknown {
        None => "failure {code}",
        Some(u) => {
            let text = u.get_ref();
            if text.trim().is_empty() || text.replace("{code}", "").contains(['{', '}']) {
                return Err(ctx.err(
                    u.span(),
                    "progress.failure.unknown",
                    tr!("error.dialect_file.unknown_text"),
                ));
            }
            leak(text)
        }
    };
    let label = f.field.get_ref().rsplit('/').next().unwrap_or_default();
    let errors = ErrorTable {
        fields: Box::leak(vec![leak(label)].into_boxed_slice()),
        failures: match f.failing {
            Failing::Negative => FailureValues::Negative,
            Failing::Listed | Failing::NonZero => FailureValues::NonZero,
        },
        label: leak(label),
        codes: Box::leak(table.into_boxed_slice()),
        format: "{text}",
        unknown,
    };
    Ok((codes, sim, Box::leak(Box::new(errors))))
}

/// The simulator fault a code is marked with (`sim = "verify"`), each at most once.
fn sim_fault(
    ctx: &Ctx,
    c: &CodeToml,
    marked: &[(SimFault, Value)],
    field: &str,
) -> Result<Option<SimFault>, LoadError> {
    let Some(s) = &c.sim else { return Ok(None) };
    let fault = SimFault::ALL
        .iter()
        .find(|(name, _)| name == s.get_ref())
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            ctx.err(
                s.span(),
                field,
                tr!(
                    "error.dialect_file.sim_fault",
                    value = format!("{:?}", s.get_ref())
                ),
            )
        })?;
    if marked.iter().any(|(f, _)| *f == fault) {
        return Err(ctx.err(
            s.span(),
            field,
            tr!(
                "error.dialect_file.sim_twice",
                value = format!("{:?}", s.get_ref())
            ),
        ));
    }
    Ok(Some(fault))
}

/// Parses a payload template and renders it with sample values that would break JSON wherever
/// a text placeholder stood outside quotes (they contain quotes and backslashes), so a
/// template that could produce invalid JSON is refused now rather than at rollout time.
fn payload(
    ctx: &Ctx,
    field: &str,
    t: &Spanned<String>,
    shape: Shape,
    offer: bool,
) -> Result<PayloadTemplate, LoadError> {
    let Shape { has_key, task_key } = shape;
    let allowed = |f: Field| match f {
        Field::RequestId => field.starts_with("pull."),
        Field::Key => has_key,
        Field::TaskId => offer && task_key != KeySource::None,
        f if f.is_offer() => offer,
        _ => true,
    };
    let template =
        PayloadTemplate::parse(t.get_ref(), &allowed).map_err(|m| ctx.err(t.span(), field, m))?;
    for values in sample_values(has_key, task_key) {
        let out = template.render(&values.as_values());
        if let Err(e) = serde_json::from_str::<Value>(&out) {
            // Sample values hold no raw newline, so the rendered line is the template's line;
            // a multi-line string starting with a newline begins on the next line of the file.
            let span = t.span();
            let rest = ctx.src.get(span.start..).unwrap_or_default();
            let skipped = usize::from(rest.starts_with("'''\n") || rest.starts_with("\"\"\"\n"));
            let line = ctx.line_of(span.start) + skipped + e.line().saturating_sub(1);
            let shown: String = out
                .lines()
                .nth(e.line().saturating_sub(1))
                .unwrap_or_default()
                .trim()
                .chars()
                .take(120)
                .collect();
            return Err(LoadError::Invalid {
                file: ctx.file.to_owned(),
                line,
                field: field.to_owned(),
                message: tr!("error.dialect_file.invalid_json", why = e, shown = shown),
            });
        }
    }
    Ok(template)
}
