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
use crate::engine::DeviceRow;
use crate::ui::filter::VisibleRow;

/// The snapshot's device table as the wall reads it.
pub type Rows = [DeviceRow];

/// No square: the device is filtered out.
const NONE: usize = usize::MAX;

/// What one frame gives the wall to draw.
pub struct WallInput<'a> {
    /// The snapshot's rows, sorted by device id.
    pub rows: &'a Rows,
    /// The filtered, sorted order (`ConsoleView`'s): square `i` shows `rows[visible[i].index]`.
    pub visible: &'a [VisibleRow],
    pub revision: u64,
    /// The rows that changed since revision − 1 (`None`: any may have).
    pub changed: Option<&'a [DeviceId]>,
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
    /// The legend's choice: squares of other classes are dimmed.
    pub highlight: Option<u8>,
    /// Looks rebuilt from scratch, for tests and the benchmark's reading of what a frame did.
    pub full_syncs: u64,
}

fn flat(rows: &Rows) -> Vec<&DeviceRow> {
    rows.iter().collect()
}

pub(super) fn row_at(rows: &Rows, i: usize) -> Option<&DeviceRow> {
    rows.get(i)
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
    /// Brings order, looks and counts up to date with this frame's snapshot and selection.
    pub fn sync(&mut self, pass: u64, input: &WallInput<'_>, selection: &BTreeSet<DeviceId>) {
        let was_drawn = self.drawn_pass.is_some_and(|p| p.saturating_add(1) >= pass);
        self.drawn_pass = Some(pass);
        let next = self.revision.and_then(|r| r.checked_add(1)) == Some(input.revision);
        let same = self.revision == Some(input.revision);
        let incremental = was_drawn
            && (same || (next && input.changed.is_some()))
            && self.selection_key == input.selection_key
            && self.square_of.len() == input.rows.len()
            && self.order.len() == input.visible.len();
        if !incremental {
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
        for id in input.changed.unwrap_or_default() {
            let Some(index) = position(input.rows, id) else {
                continue;
            };
            let square = self.square_of.get(index).copied().unwrap_or(NONE);
            if let (Some(row), Some(selected)) = (row_at(input.rows, index), self.selected.get(index))
                && square != NONE
            {
                self.set_look(square, Look::of(row, *selected));
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
            self.set_look(square, Look::of(row, selected));
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
            let look = Look::of(row, self.selected.get(v.index).copied().unwrap_or(false));
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
        let canvas = self.canvas.as_mut()?;
        let options = TextureOptions::NEAREST;
        for patch in canvas.take_patches() {
            match (patch, self.texture.as_mut()) {
                (Patch::Whole(image), Some(texture)) => texture.set(image, options),
                (Patch::Whole(image), None) => {
                    self.texture = Some(ctx.load_texture("device-wall", image, options));
                }
                (Patch::Part(pos, image), Some(texture)) => {
                    texture.set_partial(pos, image, options);
                }
                // A part before any whole cannot happen (a new canvas starts whole).
                (Patch::Part(..), None) => {}
            }
        }
        self.texture.as_ref().map(TextureHandle::id)
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
    pub fn set_selected(&mut self, index: usize, selected: bool, rows: &Rows, selection_len: usize) {
        if let Some(flag) = self.selected.get_mut(index) {
            *flag = selected;
        }
        self.selection_key.1 = selection_len;
        if let (Some(square), Some(row)) = (self.square_of(index), row_at(rows, index)) {
            self.set_look(square, Look::of(row, selected));
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
