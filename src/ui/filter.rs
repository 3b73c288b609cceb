//! Which devices the table and the tiles show, in which order, and how selection changes apply:
//! pure functions over the engine's `DeviceRow`s, so they are unit-tested without a window.
//!
//! Owns: the filter (text, dialect, version, status), column sorting, the gateway → sub-device
//! grouping and the bulk selection operations. Never draws, never talks to the engine.

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::device_id::{DeviceId, DialectId};
use crate::engine::{CampaignView, DeviceRow, DeviceRows};
use crate::i18n::tr;
use crate::rollout::DeviceStatus;

/// What the operator typed and picked above the device list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceFilter {
    /// Case-insensitive substring of the device id, a version or the last message.
    pub text: String,
    pub dialect: Option<DialectId>,
    /// Exact version of any module (trimmed); empty = any.
    pub version: String,
    pub status: StatusFilter,
}

/// The status part of the filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StatusFilter {
    #[default]
    Any,
    /// Not part of any campaign.
    Idle,
    Offline,
    /// Noticed, downloading or installing.
    InFlight,
    /// Failed, rejected or timed out.
    Failures,
    Is(DeviceStatus),
}

impl StatusFilter {
    /// The choices offered in the filter's drop-down, in order.
    pub fn choices() -> Vec<StatusFilter> {
        let mut all = vec![
            StatusFilter::Any,
            StatusFilter::Idle,
            StatusFilter::Offline,
            StatusFilter::InFlight,
            StatusFilter::Failures,
        ];
        all.extend(DeviceStatus::ALL.into_iter().map(StatusFilter::Is));
        all
    }

    pub fn label(self) -> String {
        match self {
            StatusFilter::Any => tr!("ui.filter.any_status"),
            StatusFilter::Idle => tr!("ui.filter.idle"),
            StatusFilter::Offline => tr!("ui.filter.offline"),
            StatusFilter::InFlight => tr!("ui.filter.in_flight"),
            StatusFilter::Failures => tr!("ui.filter.failures"),
            StatusFilter::Is(s) => status_label(s),
        }
    }

    fn matches(self, row: &DeviceRow) -> bool {
        let status = row.rollout.as_ref().map(|r| r.status);
        match self {
            StatusFilter::Any => true,
            StatusFilter::Idle => status.is_none(),
            StatusFilter::Offline => !row.record.online,
            StatusFilter::InFlight => status.is_some_and(DeviceStatus::in_flight),
            StatusFilter::Failures => status.is_some_and(DeviceStatus::is_failure),
            StatusFilter::Is(s) => status == Some(s),
        }
    }
}

/// The word the UI shows for a status ("timed out", not "timed_out").
pub fn status_label(status: DeviceStatus) -> String {
    crate::terms::states::device_status(status)
}

impl DeviceFilter {
    pub fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
            && self.dialect.is_none()
            && self.version.trim().is_empty()
            && self.status == StatusFilter::Any
    }

    /// Whether `row` passes every part of the filter.
    pub fn matches(&self, row: &DeviceRow) -> bool {
        if self.dialect.is_some_and(|d| d != row.record.dialect()) {
            return false;
        }
        if !self.status.matches(row) {
            return false;
        }
        let version = self.version.trim();
        if !version.is_empty() && !row.record.versions.iter().any(|(_, v)| v == version) {
            return false;
        }
        let needle = self.needle();
        needle.is_empty() || text_matches(row, &needle)
    }

    /// The text part, trimmed and lower-cased. Asked for every row of the fleet at each filter
    /// change: nothing is allocated when the text is already lower-case ASCII.
    fn needle(&self) -> Cow<'_, str> {
        let text = self.text.trim();
        if text
            .bytes()
            .any(|b| !b.is_ascii() || b.is_ascii_uppercase())
        {
            Cow::Owned(text.to_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    }
}

thread_local! {
    /// The searched text of the row being matched (one buffer, not one string per row).
    static ROW_TEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Separates a row's fields in [`ROW_TEXT`]: no id segment holds it, so a match never spans
/// two fields unless the needle itself holds one (then the fields are matched one by one).
const FIELD_END: char = '\0';

/// Whether `hay`, lower-cased, contains `needle_lower` (the long way: for needles holding
/// [`FIELD_END`], and the proptest's reference).
fn contains_folded(hay: &str, needle_lower: &str) -> bool {
    hay.to_lowercase().contains(needle_lower)
}

/// Writes the fields the text filter searches, lower-cased, into `out`: id, modules and
/// versions, last message, error, each ended by [`FIELD_END`].
fn write_row_text(row: &DeviceRow, out: &mut String) {
    out.clear();
    row.record.id.push_to(out);
    out.push(FIELD_END);
    for (module, version) in &row.record.versions {
        out.push_str(module);
        out.push(FIELD_END);
        out.push_str(version);
        out.push(FIELD_END);
    }
    if let Some(message) = &row.last_message {
        out.push_str(message);
        out.push(FIELD_END);
    }
    if let Some(error) = row.rollout.as_ref().and_then(|r| r.error.as_ref()) {
        let _ = write!(out, "{error}");
    }
    if out.is_ascii() {
        out.make_ascii_lowercase();
    } else {
        *out = out.to_lowercase();
    }
}

/// Field by field: for a needle holding [`FIELD_END`] (a message may hold one too).
fn fields_match(row: &DeviceRow, needle_lower: &str) -> bool {
    let contains = |hay: &str| contains_folded(hay, needle_lower);
    contains(&row.record.id.to_string())
        || row
            .record
            .versions
            .iter()
            .any(|(m, v)| contains(m) || contains(v))
        || row.last_message.as_deref().is_some_and(contains)
        || row
            .rollout
            .as_ref()
            .and_then(|r| r.error.as_ref())
            .is_some_and(|error| contains(&error.to_string()))
}

/// Whether any searched field of `row` contains `needle_lower`. Asked for every row of the
/// fleet at each filter change: the fields are written into one reused buffer, lower-cased in
/// place and searched once with a vectorised substring search.
fn text_matches(row: &DeviceRow, needle_lower: &str) -> bool {
    if needle_lower.contains(FIELD_END) {
        return fields_match(row, needle_lower);
    }
    ROW_TEXT.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            write_row_text(row, &mut buf);
            memchr::memmem::find(buf.as_bytes(), needle_lower.as_bytes()).is_some()
        }
        Err(_) => {
            let mut text = String::new();
            write_row_text(row, &mut text);
            text.contains(needle_lower)
        }
    })
}

/// The searched text of every row, lower-cased (as [`write_row_text`] writes it), kept by the
/// window beside the rows and patched with the rows that change (k per revision): a text filter
/// then searches one string per row instead of reading the half-dozen scattered objects each
/// row's fields live in (at 100,000 devices, most of a text filter's time). A persistent vector,
/// so devices that appear or go are inserted and removed in place.
#[derive(Debug, Clone, Default)]
pub struct SearchTexts {
    texts: imbl::Vector<Arc<str>>,
    /// The rows the texts were written from, and in which language (an error reads in it).
    rows: DeviceRows,
    lang: Option<crate::i18n::Lang>,
}

impl SearchTexts {
    /// Brings the texts up to `rows`: nothing when they were written from these rows, the rows
    /// named in `changed` when only those changed since, else all of them.
    pub fn refresh(&mut self, rows: &DeviceRows, changed: Option<&[DeviceId]>) {
        let lang = Some(crate::i18n::lang());
        if self.lang == lang && self.rows.ptr_eq(rows) {
            return;
        }
        let patched = self.lang == lang && changed.is_some_and(|ids| self.patch(rows, ids));
        if !patched {
            let mut text = String::new();
            self.texts = rows
                .iter()
                .map(|row| {
                    write_row_text(row, &mut text);
                    Arc::from(text.as_str())
                })
                .collect();
        }
        self.rows = rows.clone();
        self.lang = lang;
    }

    /// Applies `changed` (sorted by id, as the rows are) in order: before each id, the texts of
    /// every smaller id already stand where `rows` has them, so the id's place in `rows` is its
    /// place in the texts, to replace, insert or remove.
    fn patch(&mut self, rows: &DeviceRows, changed: &[DeviceId]) -> bool {
        if self.texts.len() != self.rows.len() {
            return false;
        }
        let mut text = String::new();
        for id in changed {
            let was = index_of(&self.rows, id).is_some();
            match (rows.binary_search_by(|r| r.record.id.cmp(id)), was) {
                (Ok(i), _) => {
                    let Some(row) = rows.get(i) else {
                        return false;
                    };
                    write_row_text(row, &mut text);
                    let text = Arc::from(text.as_str());
                    if was {
                        if i >= self.texts.len() {
                            return false;
                        }
                        self.texts.set(i, text);
                    } else if i <= self.texts.len() {
                        self.texts.insert(i, text);
                    } else {
                        return false;
                    }
                }
                (Err(at), true) if at < self.texts.len() => {
                    self.texts.remove(at);
                }
                (Err(_), true) => return false,
                (Err(_), false) => {}
            }
        }
        // A row that came or went without being named would shift the rest.
        self.texts.len() == rows.len()
    }
}

/// A column the device list can be sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SortColumn {
    Dialect,
    #[default]
    Device,
    Module,
    Version,
    Target,
    Status,
    Progress,
    LastMessage,
    LastSeen,
}

/// Column and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Sort {
    pub column: SortColumn,
    pub ascending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            column: SortColumn::Device,
            ascending: true,
        }
    }
}

impl Sort {
    /// Clicking a header: the same column flips direction, another starts ascending.
    pub fn clicked(self, column: SortColumn) -> Sort {
        if self.column == column {
            Sort {
                column,
                ascending: !self.ascending,
            }
        } else {
            Sort {
                column,
                ascending: true,
            }
        }
    }
}

/// Target versions by device (without module): the "target" column. A campaign's devices share
/// one string, and the map is kept in id order, as the snapshot's rows are, so a sort by target
/// walks both side by side instead of looking 100,000 ids up.
pub type Targets = BTreeMap<DeviceId, Arc<str>>;

/// The [`Targets`] of the newest campaign that targets each device. Campaigns arrive newest
/// first.
pub fn targets_by_device(campaigns: &[CampaignView]) -> Targets {
    let mut map = BTreeMap::new();
    for view in campaigns {
        let target: Arc<str> = Arc::from(view.snapshot.target_version.as_str());
        for line in &view.snapshot.devices {
            map.entry(line.id.device())
                .or_insert_with(|| Arc::clone(&target));
        }
    }
    map
}

/// The version shown for a device: its default module, else its first module.
pub fn shown_version(row: &DeviceRow) -> Option<&str> {
    row.record
        .version(None)
        .or_else(|| row.record.versions.first().map(|(_, v)| v.as_str()))
}

/// Module names of a device, comma separated ("default" for the device's own firmware).
pub fn modules_text(row: &DeviceRow) -> String {
    let names: Vec<&str> = row
        .record
        .versions
        .iter()
        .map(|(m, _)| m.as_str())
        .collect();
    names.join(", ")
}

fn module_names(row: &DeviceRow) -> impl Iterator<Item = &str> {
    row.record.versions.iter().map(|(m, _)| m.as_str())
}

fn status_rank(row: &DeviceRow) -> (u8, Option<DeviceStatus>) {
    match &row.rollout {
        None => (0, None),
        Some(r) => (1, Some(r.status)),
    }
}

/// The target version shown for a device (fleet rows name devices without a module).
pub fn target_of<'a>(targets: &'a Targets, id: &DeviceId) -> Option<&'a str> {
    if id.module().is_none() {
        targets.get(id).map(|t| &**t)
    } else {
        targets.get(&id.device()).map(|t| &**t)
    }
}

// Comparisons run n·log n times per re-sort of 10,000 rows: none of them allocates.
fn compare(a: &DeviceRow, b: &DeviceRow, column: SortColumn, targets: &Targets) -> Ordering {
    match column {
        SortColumn::Dialect => a.record.dialect().cmp(&b.record.dialect()),
        SortColumn::Device => Ordering::Equal,
        SortColumn::Module => module_names(a).cmp(module_names(b)),
        SortColumn::Version => shown_version(a).cmp(&shown_version(b)),
        SortColumn::Target => {
            target_of(targets, &a.record.id).cmp(&target_of(targets, &b.record.id))
        }
        SortColumn::Status => status_rank(a).cmp(&status_rank(b)),
        SortColumn::Progress => {
            let pct = |r: &DeviceRow| {
                r.rollout
                    .as_ref()
                    .map(|d| (d.status.is_terminal(), d.percent))
            };
            pct(a).cmp(&pct(b))
        }
        SortColumn::LastMessage => a.last_message.cmp(&b.last_message),
        // Devices not heard since the start sort before (ascending) every heard one.
        SortColumn::LastSeen => (a.record.heard_since_start, a.record.last_seen_ms)
            .cmp(&(b.record.heard_since_start, b.record.last_seen_ms)),
    }
    // The id breaks ties so the order is total and stable from frame to frame.
    .then_with(|| a.record.id.cmp(&b.record.id))
}

/// One visible line: an index into the snapshot's rows and its indentation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisibleRow {
    pub index: usize,
    /// 0 for devices and gateways, 1 for a sub-device shown under its gateway.
    pub depth: u8,
}

/// Sorts `picked` (indexes into `rows`, ascending) in the order of [`compare`]. Each row's key
/// is read once and the (key, index) pairs sorted in one flat vector: at 100,000 devices
/// comparing rows in place reads scattered memory millions of times. Rows are sorted by id, so
/// the index is the id's tie-break.
fn sort_picked(rows: &[&DeviceRow], picked: &mut Vec<usize>, sort: Sort, targets: &Targets) {
    fn by<K: Ord>(picked: &mut Vec<usize>, ascending: bool, key: impl Fn(usize) -> K) {
        let keys = picked.iter().map(|&i| key(i)).collect();
        by_keys(picked, ascending, keys);
    }
    fn by_keys<K: Ord>(picked: &mut Vec<usize>, ascending: bool, keys: Vec<K>) {
        let mut keyed: Vec<(K, usize)> = keys.into_iter().zip(picked.iter().copied()).collect();
        keyed.sort_unstable();
        if !ascending {
            keyed.reverse();
        }
        *picked = keyed.into_iter().map(|(_, i)| i).collect();
    }
    let row = |i: usize| rows[i];
    let ascending = sort.ascending;
    match sort.column {
        SortColumn::Device => {
            if !ascending {
                picked.reverse();
            }
        }
        SortColumn::Dialect => by(picked, ascending, |i| row(i).record.dialect()),
        SortColumn::Module => by(picked, ascending, |i| {
            module_names(row(i)).collect::<Vec<_>>()
        }),
        SortColumn::Version => by(picked, ascending, |i| shown_version(row(i))),
        SortColumn::Target => {
            let ranks = target_ranks(rows, picked, targets);
            by_keys(picked, ascending, ranks);
        }
        SortColumn::Status => by(picked, ascending, |i| status_rank(row(i))),
        SortColumn::Progress => by(picked, ascending, |i| {
            row(i)
                .rollout
                .as_ref()
                .map(|d| (d.status.is_terminal(), d.percent))
        }),
        SortColumn::LastMessage => {
            by_last_message(rows, picked);
            if !ascending {
                picked.reverse();
            }
        }
        SortColumn::LastSeen => by(picked, ascending, |i| {
            let r = &row(i).record;
            (r.heard_since_start, r.last_seen_ms)
        }),
    }
}

/// Orders `picked` by last message (none first), the index breaking ties. Real last messages
/// share long prefixes (a topic shape per dialect), so they go through a radix sort.
fn by_last_message(rows: &[&DeviceRow], picked: &mut Vec<usize>) {
    let mut silent = Vec::new();
    let mut texts = Vec::with_capacity(picked.len());
    for &i in picked.iter() {
        match rows.get(i).and_then(|r| r.last_message.as_deref()) {
            Some(text) => texts.push((text, i)),
            None => silent.push(i),
        }
    }
    super::text_order::sort_by_text(&mut texts);
    silent.extend(texts.into_iter().map(|(_, i)| i));
    *picked = silent;
}

/// Each picked row's target as a rank (0: none; then the distinct targets in order), read by
/// walking the rows (picked in id order) and the targets (kept in id order) side by side: no
/// lookup per row, and the sort compares integers. A campaign's devices share one target
/// string, so the distinct ones are found by pointer.
fn target_ranks(rows: &[&DeviceRow], picked: &[usize], targets: &Targets) -> Vec<u32> {
    let mut shared: Vec<&Arc<str>> = Vec::new();
    for t in targets.values() {
        if !shared.iter().any(|s| Arc::ptr_eq(s, t)) {
            shared.push(t);
        }
    }
    let mut texts: Vec<&str> = shared.iter().map(|t| &***t).collect();
    texts.sort_unstable();
    texts.dedup();
    let rank_of_text = |t: &str| texts.binary_search(&t).map_or(0, |r| r as u32 + 1);
    let shared_ranks: Vec<u32> = shared.iter().map(|t| rank_of_text(t)).collect();
    let rank = |t: &Arc<str>| {
        shared
            .iter()
            .position(|s| Arc::ptr_eq(s, t))
            .and_then(|p| shared_ranks.get(p).copied())
            .unwrap_or(0)
    };
    let mut walk = targets.iter().peekable();
    picked
        .iter()
        .map(|&i| {
            let id = &rows[i].record.id;
            if id.module().is_some() {
                return target_of(targets, id).map_or(0, rank_of_text);
            }
            while walk.next_if(|(key, _)| *key < id).is_some() {}
            match walk.peek() {
                Some((key, t)) if *key == id => rank(t),
                _ => 0,
            }
        })
        .collect()
}

/// Filters and sorts `rows`; with `group`, each sub-device follows its gateway (when the gateway
/// is shown too), sub-devices sorted among themselves. `rows` must be sorted by id, as the
/// snapshot keeps them (a gateway that cannot be found leaves its sub-devices on their own).
pub fn visible_rows(
    rows: &DeviceRows,
    filter: &DeviceFilter,
    sort: Sort,
    group: bool,
    targets: &Targets,
) -> Vec<VisibleRow> {
    visible_rows_searched(rows, filter, sort, group, targets, None)
}

/// [`visible_rows`], with the text part of the filter read from `search` (written from these
/// rows) when given.
pub fn visible_rows_searched(
    rows: &DeviceRows,
    filter: &DeviceFilter,
    sort: Sort,
    group: bool,
    targets: &Targets,
    search: Option<&SearchTexts>,
) -> Vec<VisibleRow> {
    // The persistent vector finds a row in O(log n): sorting and grouping read a flat list of
    // references instead (one pass, no row copied).
    let rows: Vec<&DeviceRow> = rows.iter().map(|r| &**r).collect();
    let needle = filter.needle();
    let search = search.filter(|s| s.texts.len() == rows.len() && !needle.contains(FIELD_END));
    // An empty filter shows every row: no row is read to find out.
    let mut picked: Vec<usize> = match search {
        _ if filter.is_empty() => (0..rows.len()).collect(),
        Some(search) if !needle.is_empty() => {
            let finder = memchr::memmem::Finder::new(needle.as_bytes());
            let rest = DeviceFilter {
                text: String::new(),
                ..filter.clone()
            };
            search
                .texts
                .iter()
                .enumerate()
                .filter(|(i, text)| {
                    finder.find(text.as_bytes()).is_some()
                        && (rest.is_empty() || rows.get(*i).is_some_and(|r| rest.matches(r)))
                })
                .map(|(i, _)| i)
                .collect()
        }
        _ => (0..rows.len())
            .filter(|&i| filter.matches(rows[i]))
            .collect(),
    };
    sort_picked(&rows, &mut picked, sort, targets);
    if !group {
        return picked
            .into_iter()
            .map(|index| VisibleRow { index, depth: 0 })
            .collect();
    }
    // Rows arrive sorted by id (the snapshot's order), so a gateway is found by binary search:
    // grouping costs O(n) plus O(log n) per sub-device, not a set of every id.
    let mut shown = vec![false; rows.len()];
    picked.iter().for_each(|&i| shown[i] = true);
    let row_of = |id: &DeviceId| {
        rows.binary_search_by(|r| r.record.id.cmp(id))
            .ok()
            .filter(|&g| shown[g])
    };
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut top = Vec::with_capacity(picked.len());
    for &i in &picked {
        match rows[i].record.gateway.as_ref().and_then(row_of) {
            Some(gateway) => children.entry(gateway).or_default().push(i),
            None => top.push(i),
        }
    }
    let mut out = Vec::with_capacity(picked.len());
    for i in top {
        out.push(VisibleRow { index: i, depth: 0 });
        if let Some(kids) = children.get(&i) {
            out.extend(kids.iter().map(|&k| VisibleRow { index: k, depth: 1 }));
        }
    }
    out
}

/// For patching a grouped order: which rows name each row as their gateway (by index in the
/// snapshot's rows), whether shown or not. Built with a full [`visible_rows`]; it stays true
/// while no row is added and no row's gateway changes ([`patch_visible`] recomputes then).
#[derive(Debug, Clone, Default)]
pub struct Groups {
    children: HashMap<usize, Vec<usize>>,
}

impl Groups {
    /// The gateway → sub-devices map of `rows` (sorted by id, as the snapshot keeps them).
    pub fn of(rows: &DeviceRows) -> Groups {
        // One pass over the persistent vector into a flat list: a gateway is then found by a
        // binary search over the list, not through the vector's tree at every probe.
        let rows: Vec<&DeviceRow> = rows.iter().map(|r| &**r).collect();
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let gateway = row
                .record
                .gateway
                .as_ref()
                .and_then(|g| rows.binary_search_by(|r| r.record.id.cmp(g)).ok());
            if let Some(g) = gateway {
                children.entry(g).or_default().push(i);
            }
        }
        Groups { children }
    }

    fn children(&self, gateway: usize) -> &[usize] {
        self.children.get(&gateway).map_or(&[], Vec::as_slice)
    }
}

fn index_of(rows: &DeviceRows, id: &DeviceId) -> Option<usize> {
    rows.binary_search_by(|r| r.record.id.cmp(id)).ok()
}

/// Brings `visible` (what [`visible_rows`] gave for `before`, grouped when `groups` is given)
/// up to date with `after`, in which only the rows named in `changed` differ: a changed row
/// whose filter match and sort key stay the same keeps its place; the others (and, in a grouped
/// order, the sub-devices of a gateway that moved) are taken out and put back at their place in
/// the order (one pass over `visible`, plus O(log² n) per row moved).
/// Returns false, leaving `visible` as it was, when patching cannot work (rows were added, a
/// changed id is missing, a gateway changed, gateways nest): then the caller recomputes.
#[expect(
    clippy::too_many_arguments,
    reason = "the order's inputs, before and after: bundling them would only rename them"
)]
#[expect(
    clippy::too_many_lines,
    reason = "one pass: which rows move, then where each goes, sharing the order's closures"
)]
pub fn patch_visible(
    visible: &mut Vec<VisibleRow>,
    before: &DeviceRows,
    after: &DeviceRows,
    changed: &[DeviceId],
    filter: &DeviceFilter,
    sort: Sort,
    targets: &Targets,
    groups: Option<&Groups>,
) -> bool {
    if before.len() != after.len() {
        return false;
    }
    let order = |a: &DeviceRow, b: &DeviceRow| {
        let ord = compare(a, b, sort.column, targets);
        if sort.ascending { ord } else { ord.reverse() }
    };
    let row = |i: usize| after.get(i).map(|r| &**r);
    // The shown gateway a row sits under in a grouped order (after the change).
    let parent = |r: &DeviceRow| -> Option<usize> {
        groups?;
        let g = index_of(after, r.record.gateway.as_ref()?)?;
        row(g).is_some_and(|g| filter.matches(g)).then_some(g)
    };
    // A shown row under a shown gateway that itself sits under a shown gateway is not shown
    // (`visible_rows` lists one level): such nests are recomputed.
    let nested = |r: &DeviceRow| parent(r).and_then(row).and_then(parent).is_some();
    let mut affected: Vec<usize> = Vec::new();
    for id in changed {
        let Some(index) = index_of(after, id) else {
            return false;
        };
        let (Some(old), Some(new)) = (before.get(index), after.get(index)) else {
            return false;
        };
        if old.record.id != new.record.id {
            return false;
        }
        if groups.is_some() && (old.record.gateway != new.record.gateway || nested(new)) {
            return false;
        }
        let (was, is) = (filter.matches(old), filter.matches(new));
        if was == is && (!is || order(old, new) == Ordering::Equal) {
            continue;
        }
        affected.push(index);
        if let Some(groups) = groups {
            let kids = groups.children(index);
            if !kids.is_empty() && new.record.gateway.is_some() {
                // A gateway that is itself a sub-device: nested.
                return false;
            }
            // Sub-devices sit under their gateway: they move with it.
            affected.extend_from_slice(kids);
        }
    }
    if affected.is_empty() {
        return true;
    }
    affected.sort_unstable();
    affected.dedup();
    // Where an entry sits: under its top row (itself, or its gateway), then by depth, then by
    // its own place among its gateway's sub-devices.
    let top = |index: usize, under: Option<usize>| under.unwrap_or(index);
    let place = |a: (usize, Option<usize>), b: (usize, Option<usize>)| -> Option<Ordering> {
        let (ta, tb) = (top(a.0, a.1), top(b.0, b.1));
        if ta == tb {
            let depth = a.1.is_some().cmp(&b.1.is_some());
            Some(depth.then(order(row(a.0)?, row(b.0)?)))
        } else {
            Some(order(row(ta)?, row(tb)?))
        }
    };
    let mut kept: Vec<VisibleRow> = Vec::with_capacity(visible.len() + affected.len());
    kept.extend(
        visible
            .iter()
            .filter(|v| affected.binary_search(&v.index).is_err()),
    );
    // A kept entry's gateway, looked up only where a search lands.
    let entry = |v: &VisibleRow| -> Option<(usize, Option<usize>)> {
        if v.depth == 0 {
            return Some((v.index, None));
        }
        let gateway = row(v.index)?.record.gateway.as_ref()?;
        Some((v.index, Some(index_of(after, gateway)?)))
    };
    let mut places: Vec<(usize, (usize, Option<usize>))> = Vec::with_capacity(affected.len());
    for &i in &affected {
        let Some(new) = row(i) else {
            return false;
        };
        if !filter.matches(new) {
            continue;
        }
        if groups.is_some() && nested(new) {
            return false;
        }
        let me = (i, parent(new));
        let mut lost = false;
        let at = kept.partition_point(|v| match entry(v).and_then(|e| place(e, me)) {
            Some(o) => o == Ordering::Less,
            None => {
                lost = true;
                false
            }
        });
        if lost {
            return false;
        }
        places.push((at, me));
    }
    places.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| place(a.1, b.1).unwrap_or(Ordering::Equal))
    });
    let line = |(i, under): (usize, Option<usize>)| VisibleRow {
        index: i,
        depth: u8::from(under.is_some()),
    };
    let mut out = Vec::with_capacity(kept.len() + places.len());
    let mut places = places.into_iter().peekable();
    for (at, v) in kept.into_iter().enumerate() {
        while let Some((_, e)) = places.next_if(|(p, _)| *p == at) {
            out.push(line(e));
        }
        out.push(v);
    }
    out.extend(places.map(|(_, e)| line(e)));
    *visible = out;
    true
}

/// A bulk change of the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// The bulk operations pick devices heard since the console started only: a device merely
/// remembered from an earlier run may be gone, and one selected without the operator noticing
/// becomes a target that times out (in the canary, it holds every later wave back). Those are
/// added on purpose with [`SelectionOp::NotHeardFiltered`] or one by one.
pub enum SelectionOp {
    /// Add every heard device the filter shows.
    AllFiltered,
    /// Add the shown devices not heard since the console started.
    NotHeardFiltered,
    None,
    /// Flip every heard device the filter shows; others keep their state.
    InvertFiltered,
    /// Exactly the heard devices (of all, not only filtered) whose version is known and differs.
    NotOnVersion(String),
    Toggle(DeviceId),
}

/// Shown devices not heard since the console started: what "Select all shown" leaves out.
pub fn not_heard_shown(rows: &DeviceRows, visible: &[VisibleRow]) -> usize {
    // One pass over the persistent vector, not a lookup per shown row.
    let rows: Vec<&DeviceRow> = rows.iter().map(|r| &**r).collect();
    visible
        .iter()
        .filter_map(|v| rows.get(v.index))
        .filter(|r| !r.record.heard_since_start)
        .count()
}

/// How [`not_heard_shown`] moves from `before` to `after` when only the rows named in `changed`
/// differ (a row is shown when the filter matches it).
pub fn not_heard_shown_change(
    before: &DeviceRows,
    after: &DeviceRows,
    changed: &[DeviceId],
    filter: &DeviceFilter,
) -> isize {
    let counts = |rows: &DeviceRows, id: &DeviceId| {
        rows.binary_search_by(|r| r.record.id.cmp(id))
            .ok()
            .and_then(|i| rows.get(i))
            .is_some_and(|r| !r.record.heard_since_start && filter.matches(r))
    };
    changed
        .iter()
        .map(|id| isize::from(counts(after, id)) - isize::from(counts(before, id)))
        .sum()
}

/// Applies `op` to `selection`; `visible` are the filtered rows.
pub fn apply_selection(
    selection: &mut BTreeSet<DeviceId>,
    op: &SelectionOp,
    rows: &DeviceRows,
    visible: &[VisibleRow],
) {
    // One pass over the persistent vector, not a lookup per shown row.
    let flat: Vec<&DeviceRow> = match op {
        SelectionOp::AllFiltered | SelectionOp::NotHeardFiltered | SelectionOp::InvertFiltered => {
            rows.iter().map(|r| &**r).collect()
        }
        SelectionOp::None | SelectionOp::NotOnVersion(_) | SelectionOp::Toggle(_) => Vec::new(),
    };
    let visible_ids = |heard: bool| {
        visible
            .iter()
            .filter_map(|v| flat.get(v.index).copied())
            .filter(move |r| r.record.heard_since_start == heard)
            .map(|r| &r.record.id)
    };
    match op {
        SelectionOp::AllFiltered => selection.extend(visible_ids(true).cloned()),
        SelectionOp::NotHeardFiltered => selection.extend(visible_ids(false).cloned()),
        SelectionOp::None => selection.clear(),
        SelectionOp::InvertFiltered => {
            for id in visible_ids(true) {
                if !selection.remove(id) {
                    selection.insert(id.clone());
                }
            }
        }
        SelectionOp::NotOnVersion(version) => {
            let version = version.trim();
            // Built at once from ids in order (the rows are sorted by id), not inserted one by
            // one: this selects up to the whole fleet.
            *selection = rows
                .iter()
                .filter(|r| r.record.heard_since_start)
                .filter(|r| shown_version(r).is_some_and(|v| v != version))
                .map(|r| r.record.id.clone())
                .collect();
        }
        SelectionOp::Toggle(id) => {
            if !selection.remove(id) {
                selection.insert(id.clone());
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fleet::DeviceRecord;
    use crate::rollout::{DeviceSnapshot, Note};

    pub(crate) fn row(id: &str, version: &str, status: Option<DeviceStatus>) -> DeviceRow {
        let id: DeviceId = id.parse().unwrap();
        let mut record = DeviceRecord::new(id.clone(), 1_000);
        record.set_version(None, version);
        DeviceRow {
            record,
            last_message: Some(format!("topic of {id}")),
            rollout: status.map(|status| DeviceSnapshot {
                id,
                status,
                from_version: Some(version.into()),
                to_version: None,
                percent: 40,
                attempts: 1,
                wave: Some(0),
                error: None,
                code: None,
                retry_at: None,
                resends: 0,
                next_resend_at: None,
            }),
        }
    }

    /// `rows` as the snapshot holds them.
    pub(crate) fn table(rows: Vec<DeviceRow>) -> DeviceRows {
        rows.into_iter().map(std::sync::Arc::new).collect()
    }

    fn fleet() -> DeviceRows {
        table(fleet_rows())
    }

    fn fleet_rows() -> Vec<DeviceRow> {
        let mut gw = row("fogcloud:pk/gw1", "1.0", None);
        gw.record.online = true;
        let mut sub_b = row("fogcloud:pk/sub-b", "1.0", Some(DeviceStatus::Downloading));
        sub_b.record.gateway = Some(gw.record.id.clone());
        let mut sub_a = row("fogcloud:pk/sub-a", "2.0", Some(DeviceStatus::Succeeded));
        sub_a.record.gateway = Some(gw.record.id.clone());
        let mut offline = row("dji:DOCK1", "09.01", Some(DeviceStatus::Failed));
        offline.record.online = false;
        let mut rows = vec![
            row("aliyun:pk/dev-1", "1.0", None),
            offline,
            gw,
            sub_b,
            sub_a,
        ];
        // The snapshot's order: sorted by id.
        rows.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        rows
    }

    fn ids(rows: &DeviceRows, visible: &[VisibleRow]) -> Vec<String> {
        visible
            .iter()
            .map(|v| rows[v.index].record.id.to_string())
            .collect()
    }

    #[test]
    fn filter_by_text_dialect_version_and_status() {
        let rows = fleet();
        let count = |f: DeviceFilter| rows.iter().filter(|r| f.matches(r)).count();
        assert_eq!(count(DeviceFilter::default()), 5);
        assert_eq!(
            count(DeviceFilter {
                text: "SUB".into(),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            count(DeviceFilter {
                dialect: Some(crate::protocol::dji::ID),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(DeviceFilter {
                version: " 1.0 ".into(),
                ..Default::default()
            }),
            3
        );
        assert_eq!(
            count(DeviceFilter {
                status: StatusFilter::Idle,
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            count(DeviceFilter {
                status: StatusFilter::InFlight,
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(DeviceFilter {
                status: StatusFilter::Failures,
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(DeviceFilter {
                status: StatusFilter::Offline,
                ..Default::default()
            }),
            1
        );
        let succeeded = StatusFilter::Is(DeviceStatus::Succeeded);
        assert_eq!(
            count(DeviceFilter {
                status: succeeded,
                ..Default::default()
            }),
            1
        );
        assert!(DeviceFilter::default().is_empty());
        assert!(
            !DeviceFilter {
                text: "x".into(),
                ..Default::default()
            }
            .is_empty()
        );
    }

    #[test]
    fn sub_devices_follow_their_gateway_sorted() {
        let rows = fleet();
        let targets = Targets::new();
        let grouped = visible_rows(
            &rows,
            &DeviceFilter::default(),
            Sort::default(),
            true,
            &targets,
        );
        assert_eq!(
            ids(&rows, &grouped),
            [
                "aliyun:pk/dev-1",
                "fogcloud:pk/gw1",
                "fogcloud:pk/sub-a",
                "fogcloud:pk/sub-b",
                "dji:DOCK1"
            ]
        );
        assert_eq!(
            grouped.iter().map(|v| v.depth).collect::<Vec<_>>(),
            [0, 0, 1, 1, 0]
        );
        // A sub-device whose gateway is filtered out stands on its own.
        let only_subs = DeviceFilter {
            text: "sub".into(),
            ..Default::default()
        };
        let alone = visible_rows(&rows, &only_subs, Sort::default(), true, &targets);
        assert!(alone.iter().all(|v| v.depth == 0));
        assert_eq!(alone.len(), 2);
    }

    #[test]
    fn sort_by_column_both_ways_with_id_tie_break() {
        let rows = fleet();
        let targets = Targets::new();
        let by_version = Sort {
            column: SortColumn::Version,
            ascending: true,
        };
        let asc = visible_rows(&rows, &DeviceFilter::default(), by_version, false, &targets);
        assert_eq!(
            ids(&rows, &asc),
            [
                "dji:DOCK1",
                "aliyun:pk/dev-1",
                "fogcloud:pk/gw1",
                "fogcloud:pk/sub-b",
                "fogcloud:pk/sub-a"
            ]
        );
        let desc = visible_rows(
            &rows,
            &DeviceFilter::default(),
            by_version.clicked(SortColumn::Version),
            false,
            &targets,
        );
        assert_eq!(
            ids(&rows, &desc).first().map(String::as_str),
            Some("fogcloud:pk/sub-a")
        );
        assert!(!by_version.clicked(SortColumn::Version).ascending);
        assert!(by_version.clicked(SortColumn::Status).ascending);
        let by_status = Sort {
            column: SortColumn::Status,
            ascending: true,
        };
        let st = visible_rows(&rows, &DeviceFilter::default(), by_status, false, &targets);
        // Idle devices first, then by status order (downloading < succeeded < failed).
        assert_eq!(
            ids(&rows, &st),
            [
                "aliyun:pk/dev-1",
                "fogcloud:pk/gw1",
                "fogcloud:pk/sub-b",
                "fogcloud:pk/sub-a",
                "dji:DOCK1"
            ]
        );
    }

    #[test]
    fn selection_operations() {
        let rows = fleet();
        let targets = Targets::new();
        let subs = DeviceFilter {
            text: "sub".into(),
            ..Default::default()
        };
        let visible = visible_rows(&rows, &subs, Sort::default(), false, &targets);
        let mut sel = BTreeSet::new();
        apply_selection(&mut sel, &SelectionOp::AllFiltered, &rows, &visible);
        assert_eq!(sel.len(), 2);
        let a: DeviceId = "fogcloud:pk/sub-a".parse().unwrap();
        apply_selection(&mut sel, &SelectionOp::Toggle(a.clone()), &rows, &visible);
        assert!(!sel.contains(&a));
        apply_selection(&mut sel, &SelectionOp::InvertFiltered, &rows, &visible);
        assert_eq!(
            sel.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["fogcloud:pk/sub-a"]
        );
        apply_selection(
            &mut sel,
            &SelectionOp::NotOnVersion("1.0".into()),
            &rows,
            &visible,
        );
        assert_eq!(
            sel.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["fogcloud:pk/sub-a", "dji:DOCK1"]
        );
        apply_selection(&mut sel, &SelectionOp::None, &rows, &visible);
        assert!(sel.is_empty());
    }

    #[test]
    fn bulk_selection_leaves_out_devices_not_heard_since_the_start() {
        let mut rows = fleet_rows();
        let gone: DeviceId = "aliyun:pk/dev-1".parse().unwrap();
        for row in rows.iter_mut().filter(|r| r.record.id == gone) {
            row.record.heard_since_start = false;
        }
        let rows = table(rows);
        let targets = Targets::new();
        let visible = visible_rows(
            &rows,
            &DeviceFilter::default(),
            Sort::default(),
            false,
            &targets,
        );
        assert_eq!(not_heard_shown(&rows, &visible), 1);
        let mut sel = BTreeSet::new();
        apply_selection(&mut sel, &SelectionOp::AllFiltered, &rows, &visible);
        assert_eq!(sel.len(), rows.len() - 1);
        assert!(!sel.contains(&gone));
        apply_selection(&mut sel, &SelectionOp::InvertFiltered, &rows, &visible);
        assert!(sel.is_empty(), "{sel:?}");
        apply_selection(&mut sel, &SelectionOp::NotHeardFiltered, &rows, &visible);
        assert_eq!(sel.iter().collect::<Vec<_>>(), [&gone]);
        apply_selection(
            &mut sel,
            &SelectionOp::NotOnVersion("9.9".into()),
            &rows,
            &visible,
        );
        assert!(!sel.contains(&gone));
        assert_eq!(sel.len(), rows.len() - 1);
    }

    fn statuses() -> [Option<DeviceStatus>; 6] {
        [
            None,
            Some(DeviceStatus::Pending),
            Some(DeviceStatus::Downloading),
            Some(DeviceStatus::Installing),
            Some(DeviceStatus::Succeeded),
            Some(DeviceStatus::Failed),
        ]
    }

    proptest::proptest! {
        /// Searched texts written once and patched with the rows that changed, came or went
        /// filter exactly as reading every row does.
        #[test]
        fn patched_search_texts_filter_as_the_rows_do(
            start in proptest::collection::vec((0..6usize, 0..3u8), 1..30),
            changes in proptest::collection::vec((0..30usize, 0..6usize, 0..3u8), 0..10),
            added in proptest::option::of(0..30usize),
            removed in proptest::option::of(0..30usize),
            needle in "(D0|d1|1\\.2|topic|pk/d|xyz|FAILED)",
        ) {
            let make = |n: usize, status: usize, version: u8| {
                let mut r = row(&format!("aliyun:pk/d{n:02}"), &format!("1.{version}"), statuses()[status]);
                if let Some(line) = r.rollout.as_mut() {
                    line.error = Some(Note::Text { text: format!("flash FAILED at {n}") });
                }
                r
            };
            let before = table(start.iter().enumerate().map(|(n, &(st, v))| make(n * 2, st, v)).collect());
            let mut after = before.clone();
            let mut changed = Vec::new();
            for (n, status, version) in changes {
                let n = n % before.len();
                after.set(n, std::sync::Arc::new(make(n * 2, status, version)));
                changed.push(after[n].record.id.clone());
            }
            if let Some(at) = added {
                // An odd number sorts between two existing rows.
                let at = at % before.len();
                let new = make(at * 2 + 1, 0, 0);
                changed.push(new.record.id.clone());
                after.insert(at + 1, std::sync::Arc::new(new));
            }
            if let Some(at) = removed.filter(|_| after.len() > 1) {
                let at = at % after.len();
                changed.push(after[at].record.id.clone());
                after.remove(at);
            }
            changed.sort();
            changed.dedup();
            let mut search = SearchTexts::default();
            search.refresh(&before, None);
            // Patched in place, not rewritten.
            proptest::prop_assert!(search.patch(&after, &changed));
            search.rows = after.clone();
            let filter = DeviceFilter { text: needle, ..DeviceFilter::default() };
            let targets = Targets::new();
            for group in [false, true] {
                proptest::prop_assert_eq!(
                    visible_rows_searched(&after, &filter, Sort::default(), group, &targets, Some(&search)),
                    visible_rows(&after, &filter, Sort::default(), group, &targets)
                );
            }
        }
    }

    proptest::proptest! {
        /// Patching the visible order with the rows that changed gives what a full filter and
        /// sort of the new rows gives, whatever the filter, column and direction, grouped under
        /// gateways or not.
        #[test]
        fn a_patched_order_equals_a_recomputed_one(
            start in proptest::collection::vec((0usize..6, 0u8..3, 0u8..=100, proptest::bool::ANY), 1..40),
            changes in proptest::collection::vec((0usize..40, 0usize..6, 0u8..3, 0u8..=100), 0..20),
            column in 0usize..9,
            ascending in proptest::bool::ANY,
            status_filter in 0usize..8,
            version_filter in 0u8..4,
            group in proptest::bool::ANY,
        ) {
            // Rows from the fourth on may sit under one of the first three (one level).
            let make = |n: usize, (status, version, percent): (usize, u8, u8), under: bool| {
                let mut r = row(&format!("aliyun:pk/d{n:02}"), &format!("1.{version}"), statuses()[status]);
                if let Some(line) = r.rollout.as_mut() {
                    line.percent = percent;
                }
                r.record.last_seen_ms = i64::from(percent);
                r.record.heard_since_start = percent % 3 != 0;
                if under && n >= 3 {
                    r.record.gateway = Some(format!("aliyun:pk/d{:02}", n % 3).parse().unwrap());
                }
                r
            };
            let before = table(start.iter().enumerate().map(|(n, &(st, v, p, under))| make(n, (st, v, p), under)).collect());
            let mut after = before.clone();
            let mut changed = Vec::new();
            for (n, status, version, percent) in changes {
                let n = n % before.len();
                after.set(n, std::sync::Arc::new(make(n, (status, version, percent), start[n].3)));
                changed.push(after[n].record.id.clone());
            }
            changed.sort();
            changed.dedup();
            let columns = [
                SortColumn::Dialect, SortColumn::Device, SortColumn::Module, SortColumn::Version,
                SortColumn::Target, SortColumn::Status, SortColumn::Progress,
                SortColumn::LastMessage, SortColumn::LastSeen,
            ];
            let sort = Sort { column: columns[column], ascending };
            let choices = StatusFilter::choices();
            let filter = DeviceFilter {
                status: choices[status_filter % choices.len()],
                version: if version_filter == 3 { String::new() } else { format!("1.{version_filter}") },
                ..DeviceFilter::default()
            };
            // Some devices are targets of a campaign, some not.
            let targets: Targets = (0..40)
                .filter(|n| n % 4 != 0)
                .map(|n| (format!("aliyun:pk/d{n:02}").parse().unwrap(), Arc::from(format!("2.{}", n % 3))))
                .collect();
            let mut visible = visible_rows(&before, &filter, sort, group, &targets);
            let groups = group.then(|| Groups::of(&before));
            let not_heard = not_heard_shown(&before, &visible);
            proptest::prop_assert!(patch_visible(&mut visible, &before, &after, &changed, &filter, sort, &targets, groups.as_ref()));
            let recomputed = visible_rows(&after, &filter, sort, group, &targets);
            proptest::prop_assert_eq!(ids(&after, &visible), ids(&after, &recomputed));
            proptest::prop_assert_eq!(
                visible.iter().map(|v| v.depth).collect::<Vec<_>>(),
                recomputed.iter().map(|v| v.depth).collect::<Vec<_>>()
            );
            let change = not_heard_shown_change(&before, &after, &changed, &filter);
            proptest::prop_assert_eq!(not_heard.checked_add_signed(change), Some(not_heard_shown(&after, &recomputed)));
        }
    }

    #[test]
    fn a_gateway_that_changes_or_nests_makes_the_grouped_order_recomputed() {
        let before = fleet();
        let targets = Targets::new();
        let filter = DeviceFilter::default();
        let grouped = visible_rows(&before, &filter, Sort::default(), true, &targets);
        let groups = Groups::of(&before);
        let sub: DeviceId = "fogcloud:pk/sub-a".parse().unwrap();
        let at = before.iter().position(|r| r.record.id == sub).unwrap();
        // sub-a leaves its gateway.
        let mut moved = DeviceRow::clone(&before[at]);
        moved.record.gateway = None;
        let mut after = before.clone();
        after.set(at, std::sync::Arc::new(moved));
        let mut visible = grouped.clone();
        assert!(!patch_visible(
            &mut visible,
            &before,
            &after,
            std::slice::from_ref(&sub),
            &filter,
            Sort::default(),
            &targets,
            Some(&groups),
        ));
        assert_eq!(visible, grouped, "left as it was");
        // With sub-b under sub-a, itself under gw1, a change of sub-b is recomputed.
        let other: DeviceId = "fogcloud:pk/sub-b".parse().unwrap();
        let at = before.iter().position(|r| r.record.id == other).unwrap();
        let mut nested = DeviceRow::clone(&before[at]);
        nested.record.gateway = Some(sub);
        let mut before = before.clone();
        before.set(at, std::sync::Arc::new(nested.clone()));
        let groups = Groups::of(&before);
        let mut visible = visible_rows(&before, &filter, Sort::default(), true, &targets);
        if let Some(line) = nested.rollout.as_mut() {
            line.percent = 55;
        }
        let mut after = before.clone();
        after.set(at, std::sync::Arc::new(nested));
        assert!(!patch_visible(
            &mut visible,
            &before,
            &after,
            &[other],
            &filter,
            Sort {
                column: SortColumn::Progress,
                ascending: true
            },
            &targets,
            Some(&groups),
        ));
    }

    proptest::proptest! {
        /// The one-buffer match agrees with matching each field, lower-cased, on its own, for
        /// any message and needle (ASCII or not: "K" as the Kelvin sign lower-cases to an
        /// ASCII "k"; a needle may hold the field separator).
        #[test]
        fn one_buffer_match_is_a_match_of_some_field(
            message in "[a-zA-Z0-9/:K\u{212A}\u{130}\u{0}é-]{0,12}",
            needle in "[a-zA-Z0-9/:K\u{212A}\u{0}é-]{0,3}",
        ) {
            let needle = needle.to_lowercase();
            let mut row = row("aliyun:pk/dev-K1", "1.0.K", None);
            row.last_message = Some(message);
            proptest::prop_assert_eq!(text_matches(&row, &needle), fields_match(&row, &needle));
        }
    }

    #[test]
    fn status_choices_are_distinct_and_labelled() {
        let choices = StatusFilter::choices();
        let labels: BTreeSet<String> = choices.iter().map(|c| c.label()).collect();
        assert_eq!(labels.len(), choices.len());
        assert!(labels.contains("timed out"));
    }
}
