//! The wall's geometry: how big a device's square is so the shown fleet fits the view, where
//! each square sits, and which device the pointer is on (arithmetic, no search). Pure: sizes
//! in points in, cell numbers out.

use egui::{Pos2, Rect, Vec2, pos2, vec2};

/// The smallest square, in points: below it a device cannot be pointed at. A fleet that does
/// not fit at this size scrolls.
pub const MIN_CELL: u32 = 2;
/// The largest square: a small fleet is not blown up into blocks.
pub const MAX_CELL: u32 = 28;
/// From this size on, a square keeps a one-point gap on its right and bottom, so neighbours
/// of the same status stay countable.
pub const GAP_FROM: u32 = 5;

/// The wall's grid: `count` squares of `cell` points, `per_line` to a line, in reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub count: usize,
    /// Side of a square, in points (the texture has one texel per point).
    pub cell: u32,
    pub per_line: usize,
    pub lines: usize,
}

impl Grid {
    /// The largest square (between [`MIN_CELL`] and [`MAX_CELL`]) with which `count` devices fit
    /// in `width` × `height`; when not even the smallest fits, the smallest (the wall scrolls).
    pub fn fit(count: usize, width: f32, height: f32) -> Grid {
        let width = width.max(1.0);
        let height = height.max(1.0);
        let n = count.max(1) as f32;
        let guess = ((width * height / n).sqrt().floor() as u32).clamp(MIN_CELL, MAX_CELL);
        let mut cell = guess;
        // The square-root guess ignores the partial last line and column: step down until it fits.
        while cell > MIN_CELL && !Grid::with_cell(count, width, cell).fits(height) {
            cell -= 1;
        }
        Grid::with_cell(count, width, cell)
    }

    fn with_cell(count: usize, width: f32, cell: u32) -> Grid {
        let per_line = ((width / cell as f32).floor() as usize).max(1);
        Grid {
            count,
            cell,
            per_line,
            lines: count.div_ceil(per_line),
        }
    }

    fn fits(&self, height: f32) -> bool {
        self.lines as f32 * self.cell as f32 <= height
    }

    /// The texture's size in texels: `[width, height]`.
    pub fn size_px(&self) -> [usize; 2] {
        let c = self.cell as usize;
        [self.per_line * c, self.lines.max(1) * c]
    }

    /// The wall's size in points.
    pub fn size(&self) -> Vec2 {
        let [w, h] = self.size_px();
        vec2(w as f32, h as f32)
    }

    /// The gap a square keeps on its right and bottom, in texels.
    pub fn gap(&self) -> usize {
        usize::from(self.cell >= GAP_FROM)
    }

    /// The top-left texel of square `i`.
    pub fn origin_px(&self, i: usize) -> [usize; 2] {
        let c = self.cell as usize;
        [(i % self.per_line) * c, (i / self.per_line) * c]
    }

    /// Square `i` on screen, for a wall whose top-left corner is at `origin`.
    pub fn cell_rect(&self, origin: Pos2, i: usize) -> Rect {
        let [x, y] = self.origin_px(i);
        let side = (self.cell as usize - self.gap()) as f32;
        Rect::from_min_size(origin + vec2(x as f32, y as f32), vec2(side, side))
    }

    /// The square under `pointer` on a wall whose top-left corner is at `origin`; `None` off
    /// the wall, past the last device, or in the gap between squares (a pointer on a gap would
    /// otherwise name a device it is not on).
    pub fn cell_at(&self, origin: Pos2, pointer: Pos2) -> Option<usize> {
        let d = pointer - origin;
        if d.x < 0.0 || d.y < 0.0 || !d.x.is_finite() || !d.y.is_finite() {
            return None;
        }
        let c = self.cell as f32;
        let (col, line) = ((d.x / c).floor() as usize, (d.y / c).floor() as usize);
        if col >= self.per_line {
            return None;
        }
        let gap = self.gap() as f32;
        if gap > 0.0 && (d.x - col as f32 * c >= c - gap || d.y - line as f32 * c >= c - gap) {
            return None;
        }
        let i = line.checked_mul(self.per_line)?.checked_add(col)?;
        (i < self.count).then_some(i)
    }
}

/// The middle of square `i`, for tests that point at a device.
pub fn cell_center(grid: &Grid, origin: Pos2, i: usize) -> Pos2 {
    let r = grid.cell_rect(origin, i);
    pos2(r.center().x, r.center().y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_fits_with_the_largest_square_that_fits() {
        // 100,000 devices in 1500 × 800 points: 12 points² each, 3-point squares.
        let g = Grid::fit(100_000, 1500.0, 800.0);
        assert_eq!(g.cell, 3);
        assert_eq!(g.per_line, 500);
        assert_eq!(g.lines, 200);
        assert!(g.lines as f32 * 3.0 <= 800.0);
        // One more point would not fit.
        assert!(!Grid::with_cell(100_000, 1500.0, 4).fits(800.0));
        // A small fleet is capped.
        assert_eq!(Grid::fit(10, 1500.0, 800.0).cell, MAX_CELL);
        // A fleet that cannot fit takes the smallest square and scrolls.
        let g = Grid::fit(200_000, 300.0, 200.0);
        assert_eq!(g.cell, MIN_CELL);
        assert_eq!(g.per_line, 150);
        assert!(g.size().y > 200.0);
        // The square-root guess is too big when the last line spills: it steps down.
        let g = Grid::fit(5, 20.0, 10.0);
        assert!(g.lines as f32 * g.cell as f32 <= 10.0, "{g:?}");
        assert_eq!(Grid::fit(0, 100.0, 100.0).lines, 0);
    }

    #[test]
    fn the_pointer_names_the_device_under_it() {
        let g = Grid::fit(1_000, 330.0, 200.0);
        let o = pos2(10.0, 20.0);
        assert_eq!(g.cell, 8);
        assert_eq!(g.per_line, 41);
        assert_eq!(g.cell_at(o, o), Some(0));
        assert_eq!(g.cell_at(o, o + vec2(6.9, 6.9)), Some(0));
        // The gap on the right and bottom of a square is no device's.
        assert_eq!(g.cell_at(o, o + vec2(7.0, 3.0)), None);
        assert_eq!(g.cell_at(o, o + vec2(3.0, 7.5)), None);
        assert_eq!(g.cell_at(o, o + vec2(8.0, 0.0)), Some(1));
        assert_eq!(g.cell_at(o, o + vec2(0.0, 8.0)), Some(41));
        assert_eq!(
            g.cell_at(o, o + vec2(8.0 * 5.0 + 1.0, 8.0 * 3.0 + 1.0)),
            Some(3 * 41 + 5)
        );
        // Left of, above, right of the last column, after the last device.
        assert_eq!(g.cell_at(o, o - vec2(0.5, 0.0)), None);
        assert_eq!(g.cell_at(o, o - vec2(0.0, 0.5)), None);
        assert_eq!(g.cell_at(o, o + vec2(41.0 * 8.0 + 1.0, 1.0)), None);
        let last_line = 999 / 41;
        assert_eq!(
            g.cell_at(o, o + vec2(8.0 * 40.0 + 1.0, 8.0 * last_line as f32 + 1.0)),
            None,
            "square 24·41+40 = 1024 is past the 1,000th device"
        );
        assert_eq!(g.cell_at(o, pos2(f32::NAN, 30.0)), None);
        // Every square's centre names that square, at every size.
        for (count, w, h) in [
            (100_000, 1500.0, 800.0),
            (1_000, 330.0, 200.0),
            (7, 50.0, 50.0),
        ] {
            let g = Grid::fit(count, w, h);
            for i in (0..count).step_by(97).chain([count - 1]) {
                assert_eq!(g.cell_at(o, cell_center(&g, o, i)), Some(i), "{g:?} {i}");
            }
        }
    }
}
