//! What the wall remembers between frames, so a frame costs what changed: which device each
//! square shows (the filtered, sorted order), where each device is, each square's look, the
//! count per class for the legend, and the canvas. A new snapshot revision relooks only the
//! rows it names as changed and the squares whose device moved; a new layout, theme or
//! legend choice repaints every square from the kept looks.

use std::collections::BTreeSet;

use egui::{Context, TextureHandle, TextureOptions};

use super::canvas::{Canvas, Paint, Patch};
use super::class::{CLASSES, Look};
use super::layout::Grid;
use crate::device_id::DeviceId;
use crate::engine::{DeviceRow, DeviceRows, RowChangeLog};
use crate::ui::filter::VisibleRow;

/// The snapshot's device table as the wall reads it.
pub type Rows = DeviceRows;

/// No square: the device is filtered out.
const NONE: usize = usize::MAX;

/// What one frame gives the wall to draw.
pub struct WallInput<'a> {
    /// The snapshot's rows, sorted by device id.
    pub rows: &'a Rows,
    /// The filtered, sorted order (`ConsoleView`'s): square `i` shows `rows[visible[i].index]`.
    pub visible: &'a [VisibleRow],
    pub revision: u64,
    /// The rows that changed at the last few revisions (the snapshot's).
    pub changes: &'a RowChangeLog,
    /// Changes whenever the selection may have changed by other means than the wall's own
    /// clicks (a bulk selection, a new set).
    pub selection_key: (u64, usize),
}

#[derive(Default)]
pub struct WallState {
    /// Row index per square.
    order: Vec<usize>,
    /// Square per row index ([`NONE`] when filtered out).
    square_of: Vec<usize>,
    /// Selected, per row index.
    selected: Vec<bool>,
    looks: Vec<Look>,
    counts: [usize; CLASSES],
    /// Squares whose look changed since the canvas was last painted.
    pending: Vec<usize>,
    revision: Option<u64>,
    selection_key: (u64, usize),
    /// The egui pass the wall was last drawn in: a wall not drawn in the pass before (another
    /// view was shown) starts over, as the selection may have changed there.
    drawn_pass: Option<u64>,
    canvas: Option<Canvas>,
    texture: Option<TextureHandle>,
    /// Looks carry in-flight percents (the squares are large enough to show them).
    bands: bool,
    /// The legend's choice: squares of other classes are dimmed.
    pub highlight: Option<u8>,
    /// Looks rebuilt from scratch, for tests and the benchmark's reading of what a frame did.
    pub full_syncs: u64,
}

fn flat(rows: &Rows) -> Vec<&DeviceRow> {
    rows.iter().map(|r| &**r).collect()
}

pub(super) fn row_at(rows: &Rows, i: usize) -> Option<&DeviceRow> {
    rows.get(i).map(|r| &**r)
}

pub(super) fn position(rows: &Rows, id: &DeviceId) -> Option<usize> {
    rows.binary_search_by(|r| r.record.id.cmp(id)).ok()
}

/// Selected, per row: one walk over the rows and the selection together (both sorted by id).
fn selected_flags(rows: &[&DeviceRow], selection: &BTreeSet<DeviceId>) -> Vec<bool> {
    let mut flags = vec![false; rows.len()];
    if selection.is_empty() {
        return flags;
    }
    let mut picked = selection.iter().peekable();
    for (flag, row) in flags.iter_mut().zip(rows) {
        while picked.next_if(|s| **s < row.record.id).is_some() {}
        *flag = picked.peek().is_some_and(|s| **s == row.record.id);
    }
    flags
}

impl WallState {
    /// Brings order, looks and counts up to date with this frame's snapshot and selection;
    /// `bands`: the squares are large enough to show percents.
    pub fn sync(
        &mut self,
        pass: u64,
        input: &WallInput<'_>,
        selection: &BTreeSet<DeviceId>,
        bands: bool,
    ) {
        let was_drawn = self.drawn_pass.is_some_and(|p| p.saturating_add(1) >= pass);
        self.drawn_pass = Some(pass);
        let same = self.revision == Some(input.revision);
        // Skipped revisions are fine while the snapshot's log still reaches back to ours.
        let changed = match self.revision {
            Some(r) if !same => input.changes.since(r),
            _ => None,
        };
        let incremental = was_drawn
            && self.bands == bands
            && (same || changed.is_some())
            && self.selection_key == input.selection_key
            && self.square_of.len() == input.rows.len()
            && self.order.len() == input.visible.len();
        if !incremental {
            self.bands = bands;
            self.rebuild(input, selection);
            return;
        }
        self.revision = Some(input.revision);
        // Squares whose device moved (a sort key or the filter's verdict changed).
        for (square, v) in input.visible.iter().enumerate() {
            let old = self.order.get(square).copied().unwrap_or(NONE);
            if old == v.index {
                continue;
            }
            if self.square_of.get(old) == Some(&square) {
                self.square_of[old] = NONE;
            }
            self.place(square, v.index, input.rows);
        }
        if same {
            return;
        }
        for id in changed.as_deref().unwrap_or_default() {
            let Some(index) = position(input.rows, id) else {
                continue;
            };
            let square = self.square_of.get(index).copied().unwrap_or(NONE);
            if let (Some(row), Some(selected)) =
                (row_at(input.rows, index), self.selected.get(index))
                && square != NONE
            {
                self.set_look(square, Look::of(row, *selected, self.bands));
            }
        }
    }

    fn place(&mut self, square: usize, index: usize, rows: &Rows) {
        if let Some(slot) = self.order.get_mut(square) {
            *slot = index;
        }
        if let Some(slot) = self.square_of.get_mut(index) {
            *slot = square;
        }
        let selected = self.selected.get(index).copied().unwrap_or(false);
        if let Some(row) = row_at(rows, index) {
            self.set_look(square, Look::of(row, selected, self.bands));
        }
    }

    fn set_look(&mut self, square: usize, look: Look) {
        let Some(slot) = self.looks.get_mut(square) else {
            return;
        };
        if *slot == look {
            return;
        }
        if let Some(n) = self.counts.get_mut(usize::from(slot.class)) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.counts.get_mut(usize::from(look.class)) {
            *n += 1;
        }
        *slot = look;
        self.pending.push(square);
    }

    fn rebuild(&mut self, input: &WallInput<'_>, selection: &BTreeSet<DeviceId>) {
        self.full_syncs += 1;
        let rows = flat(input.rows);
        self.selected = selected_flags(&rows, selection);
        self.square_of = vec![NONE; rows.len()];
        self.order = Vec::with_capacity(input.visible.len());
        self.looks = Vec::with_capacity(input.visible.len());
        self.counts = [0; CLASSES];
        for (square, v) in input.visible.iter().enumerate() {
            let Some(row) = rows.get(v.index) else {
                // A shown row the snapshot does not have: an empty square keeps the order.
                self.order.push(NONE);
                self.looks.push(Look::default());
                continue;
            };
            let selected = self.selected.get(v.index).copied().unwrap_or(false);
            let look = Look::of(row, selected, self.bands);
            self.order.push(v.index);
            self.square_of[v.index] = square;
            self.counts[usize::from(look.class)] += 1;
            self.looks.push(look);
        }
        self.revision = Some(input.revision);
        self.selection_key = input.selection_key;
        // Every square is repainted: a new canvas.
        self.canvas = None;
        self.pending.clear();
    }

    /// Paints what changed on the canvas for `grid` and `paint` (a new canvas, painted from
    /// the kept looks, when either differs from the last) and hands the texture its patches.
    pub fn render(&mut self, ctx: &Context, grid: Grid, paint: Paint) -> Option<egui::TextureId> {
        let options = TextureOptions::NEAREST;
        for patch in self.repaint(grid, paint) {
            match (patch, self.texture.as_mut()) {
                (Patch::Whole(image), Some(texture)) => texture.set(image, options),
                (Patch::Whole(image), None) => {
                    self.texture = Some(ctx.load_texture("device-wall", image, options));
                }
                (Patch::Part(pos, image), Some(texture)) => {
                    texture.set_partial(pos, image, options);
                }
                // Without a texture the whole image goes up below.
                (Patch::Part(..), None) => {}
            }
        }
        if self.texture.is_none()
            && let Some(canvas) = &self.canvas
        {
            let image = canvas.image().clone();
            self.texture = Some(ctx.load_texture("device-wall", image, options));
        }
        self.texture.as_ref().map(TextureHandle::id)
    }

    /// Paints the squares whose look changed (every square on a new canvas) and says what the
    /// texture needs.
    fn repaint(&mut self, grid: Grid, paint: Paint) -> Vec<Patch> {
        let reuse = self
            .canvas
            .as_ref()
            .is_some_and(|c| *c.grid() == grid && *c.paint() == paint);
        if reuse {
            if let Some(canvas) = self.canvas.as_mut() {
                for &square in &self.pending {
                    if let Some(look) = self.looks.get(square) {
                        canvas.draw(square, *look);
                    }
                }
            }
        } else {
            let mut canvas = Canvas::new(grid, paint);
            for (square, look) in self.looks.iter().enumerate() {
                canvas.draw(square, *look);
            }
            self.canvas = Some(canvas);
        }
        self.pending.clear();
        self.canvas
            .as_mut()
            .map(Canvas::take_patches)
            .unwrap_or_default()
    }

    /// The device shown on `square`, as a row index.
    pub fn row_of(&self, square: usize) -> Option<usize> {
        self.order.get(square).copied().filter(|i| *i != NONE)
    }

    /// The square showing row `index`.
    pub fn square_of(&self, index: usize) -> Option<usize> {
        self.square_of.get(index).copied().filter(|s| *s != NONE)
    }

    /// Shown devices per class.
    pub fn counts(&self) -> &[usize; CLASSES] {
        &self.counts
    }

    /// The wall's own click changed row `index`'s selection: its square follows at once.
    pub fn set_selected(
        &mut self,
        index: usize,
        selected: bool,
        rows: &Rows,
        selection_len: usize,
    ) {
        if let Some(flag) = self.selected.get_mut(index) {
            *flag = selected;
        }
        self.selection_key.1 = selection_len;
        if let (Some(square), Some(row)) = (self.square_of(index), row_at(rows, index)) {
            self.set_look(square, Look::of(row, selected, self.bands));
        }
    }

    pub fn grid(&self) -> Option<&Grid> {
        self.canvas.as_ref().map(Canvas::grid)
    }

    /// The canvas's pixels, for tests.
    pub fn image(&self) -> Option<&egui::ColorImage> {
        self.canvas.as_ref().map(Canvas::image)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rollout::DeviceStatus;
    use crate::ui::filter::tests::{row, table};
    use crate::ui::wall::class;

    /// A snapshot's rows and change log, changed the way the engine changes them.
    struct Fleet {
        rows: DeviceRows,
        log: RowChangeLog,
        revision: u64,
    }

    impl Fleet {
        fn new(n: usize) -> Fleet {
            let rows = (0..n)
                .map(|i| row(&format!("dji:SN{i:05}"), "1.0", Some(DeviceStatus::Pending)))
                .collect();
            let mut log = RowChangeLog::default();
            log.record(1, None);
            Fleet {
                rows: table(rows),
                log,
                revision: 1,
            }
        }

        /// The next revision: rows `changed` go through `f`.
        fn publish(&mut self, changed: &[usize], f: impl Fn(&mut DeviceRow)) {
            let mut ids = Vec::new();
            for &i in changed {
                let mut r = DeviceRow::clone(&self.rows[i]);
                f(&mut r);
                ids.push(r.record.id.clone());
                self.rows.set(i, Arc::new(r));
            }
            self.revision += 1;
            self.log.record(self.revision, Some(ids.into()));
        }

        fn input<'a>(&'a self, visible: &'a [VisibleRow]) -> WallInput<'a> {
            WallInput {
                rows: &self.rows,
                visible,
                revision: self.revision,
                changes: &self.log,
                selection_key: (0, 0),
            }
        }
    }

    fn all(n: usize) -> Vec<VisibleRow> {
        (0..n).map(|index| VisibleRow { index, depth: 0 }).collect()
    }

    fn paint() -> Paint {
        Paint {
            background: egui::Color32::BLACK,
            highlight: None,
        }
    }

    fn parts(patches: &[Patch]) -> Vec<[usize; 2]> {
        patches
            .iter()
            .map(|p| match p {
                Patch::Part(pos, _) => *pos,
                Patch::Whole(_) => [usize::MAX; 2],
            })
            .collect()
    }

    fn fail(r: &mut DeviceRow) {
        if let Some(line) = r.rollout.as_mut() {
            line.status = DeviceStatus::Failed;
        }
    }

    #[test]
    fn a_revision_relooks_the_rows_it_names_and_the_squares_that_moved() {
        let ctx = Context::default();
        let none = BTreeSet::new();
        let grid = Grid {
            count: 100,
            cell: 3,
            per_line: 10,
            lines: 10,
        };
        let mut fleet = Fleet::new(100);
        let visible = all(100);
        let mut wall = WallState::default();
        wall.sync(1, &fleet.input(&visible), &none, false);
        assert_eq!(wall.full_syncs, 1);
        assert_eq!(wall.counts()[0], 100);
        assert!(matches!(
            wall.repaint(grid, paint()).as_slice(),
            [Patch::Whole(_)]
        ));
        assert!(wall.repaint(grid, paint()).is_empty());
        assert!(wall.render(&ctx, grid, paint()).is_some(), "a texture");

        // Revision 2: device 57 fails; the snapshot says so.
        fleet.publish(&[57], fail);
        wall.sync(2, &fleet.input(&visible), &none, false);
        assert_eq!(wall.full_syncs, 1, "no rebuild");
        assert_eq!(wall.pending, [57]);
        let failed = usize::from(class::class_of_status(DeviceStatus::Failed));
        assert_eq!((wall.counts()[0], wall.counts()[failed]), (99, 1));
        // Repainting patches square 57 (line 5, column 7) only.
        assert_eq!(parts(&wall.repaint(grid, paint())), [[21, 15]]);
        // A new layout or legend choice repaints the whole wall from the kept looks.
        let dimmed = Paint {
            highlight: Some(failed as u8),
            ..paint()
        };
        assert!(matches!(
            wall.repaint(grid, dimmed).as_slice(),
            [Patch::Whole(_)]
        ));
        assert_eq!(wall.full_syncs, 1);

        // A row named as changed whose look did not change costs no pixel.
        fleet.publish(&[3], |r| r.record.last_seen_ms += 1);
        wall.sync(3, &fleet.input(&visible), &none, false);
        assert!(wall.pending.is_empty());

        // Two revisions at once (a frame slower than the engine): both are patched.
        fleet.publish(&[10], fail);
        fleet.publish(&[20], fail);
        wall.sync(4, &fleet.input(&visible), &none, false);
        assert_eq!(wall.full_syncs, 1);
        assert_eq!(wall.pending, [10, 20]);
        assert_eq!(wall.counts()[failed], 3);

        // The order changes (a sort by status puts a failed device first): only the squares
        // whose device changed are relooked, and the pointer's mapping follows.
        let mut moved = visible.clone();
        let failed_row = moved.remove(57);
        moved.insert(0, failed_row);
        fleet.publish(&[], fail);
        wall.pending.clear();
        wall.sync(5, &fleet.input(&moved), &none, false);
        assert_eq!(wall.full_syncs, 1);
        assert_eq!(wall.row_of(0), Some(57));
        assert_eq!(wall.square_of(57), Some(0));
        assert_eq!(wall.square_of(56), Some(57));
        assert_eq!(wall.row_of(57), Some(56));
        // Squares 1..=57 show another device, but only those whose look differs are pending:
        // 0 (now failed), 11 and 21 (the failed 10 and 20 moved up by one), 10 and 20.
        let mut pending = wall.pending.clone();
        pending.sort_unstable();
        assert_eq!(pending, [0, 10, 11, 20, 21, 57]);
        let counts = *wall.counts();
        assert_eq!(counts[failed], 3, "moving changes no count");

        // The log does not reach back: rebuilt once.
        for _ in 0..=RowChangeLog::MAX_REVISIONS {
            fleet.publish(&[1], |r| r.record.last_seen_ms += 1);
        }
        wall.sync(6, &fleet.input(&moved), &none, false);
        assert_eq!(wall.full_syncs, 2);
        assert_eq!(*wall.counts(), counts);
        // Not drawn in the pass before (another view was shown): rebuilt.
        fleet.publish(&[2], fail);
        wall.sync(9, &fleet.input(&moved), &none, false);
        assert_eq!(wall.full_syncs, 3);
    }

    #[test]
    fn selection_marks_follow_bulk_changes_and_the_walls_own_clicks() {
        let fleet = Fleet::new(10);
        let rows = &fleet.rows;
        let visible = all(10);
        let mut wall = WallState::default();
        let mut selection: BTreeSet<DeviceId> =
            [2, 7].iter().map(|&i| rows[i].record.id.clone()).collect();
        let frame = |wall: &mut WallState, pass: u64, rev: u64, s: &BTreeSet<DeviceId>| {
            wall.sync(
                pass,
                &WallInput {
                    selection_key: (rev, s.len()),
                    ..fleet.input(&visible)
                },
                s,
                false,
            );
        };
        frame(&mut wall, 1, 0, &selection);
        let marked = |wall: &WallState| -> Vec<usize> {
            (0..10).filter(|&s| wall.looks[s].selected).collect()
        };
        assert_eq!(marked(&wall), [2, 7]);
        // A bulk change elsewhere (a new revision of the selection): marks follow.
        selection.insert(rows[4].record.id.clone());
        selection.remove(&rows[2].record.id);
        frame(&mut wall, 2, 1, &selection);
        assert_eq!(marked(&wall), [4, 7]);
        // The wall's own click: marked at once, no rebuild.
        let syncs = wall.full_syncs;
        selection.insert(rows[9].record.id.clone());
        wall.set_selected(9, true, rows, selection.len());
        frame(&mut wall, 3, 1, &selection);
        assert_eq!(marked(&wall), [4, 7, 9]);
        assert_eq!(wall.full_syncs, syncs);
    }

    #[test]
    fn progress_costs_a_texel_only_where_squares_show_percents() {
        let none = BTreeSet::new();
        let mut fleet = Fleet::new(10);
        fleet.publish(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], |r| {
            if let Some(line) = r.rollout.as_mut() {
                line.status = DeviceStatus::Downloading;
            }
        });
        let visible = all(10);
        let mut wall = WallState::default();
        wall.sync(1, &fleet.input(&visible), &none, false);
        fleet.publish(&[4], |r| {
            if let Some(line) = r.rollout.as_mut() {
                line.percent = 90;
            }
        });
        wall.sync(2, &fleet.input(&visible), &none, false);
        assert!(
            wall.pending.is_empty(),
            "small squares: no percent, no repaint"
        );
        // Large squares: the looks are rebuilt with percents, and progress repaints.
        wall.sync(3, &fleet.input(&visible), &none, true);
        assert_eq!(wall.full_syncs, 2);
        assert_eq!(wall.looks[4].percent, 90);
        fleet.publish(&[4], |r| {
            if let Some(line) = r.rollout.as_mut() {
                line.percent = 95;
            }
        });
        wall.sync(4, &fleet.input(&visible), &none, true);
        assert_eq!(wall.pending, [4]);
    }
}
