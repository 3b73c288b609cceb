//! The wall's pixels: one `ColorImage` with a square of texels per device, painted square by
//! square, and the patches that bring the GPU's copy up to date. A frame where k devices
//! changed uploads the spans of the lines they are on, not the wall (the whole image only when
//! most lines changed, or after a layout change).

use egui::{Color32, ColorImage};

use super::super::theme;
use super::class::{self, Look};
use super::layout::Grid;

/// How squares are coloured beyond their look: the panel's background (the gaps and dimmed
/// squares blend into it) and the class the legend singles out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    pub background: Color32,
    /// When set, squares of every other class are dimmed.
    pub highlight: Option<u8>,
}

/// What the texture needs this frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    Whole(ColorImage),
    /// A region's new texels, placed at `[x, y]`.
    Part([usize; 2], ColorImage),
}

pub struct Canvas {
    grid: Grid,
    paint: Paint,
    image: ColorImage,
    /// Squares painted since the last patches were taken.
    dirty: Vec<usize>,
    whole: bool,
}

impl Canvas {
    /// A blank wall (every texel transparent): the caller paints every square.
    pub fn new(grid: Grid, paint: Paint) -> Canvas {
        Canvas {
            grid,
            paint,
            image: ColorImage::filled(grid.size_px(), Color32::TRANSPARENT),
            dirty: Vec::new(),
            whole: true,
        }
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    pub fn paint(&self) -> &Paint {
        &self.paint
    }

    pub fn image(&self) -> &ColorImage {
        &self.image
    }

    /// Paints square `i` as `look` says.
    pub fn draw(&mut self, i: usize, look: Look) {
        if i >= self.grid.count {
            return;
        }
        let c = self.grid.cell as usize;
        let inner = c - self.grid.gap();
        let mut fill = class::color(look.class);
        if self.paint.highlight.is_some_and(|h| h != look.class) {
            fill = fill.lerp_to_gamma(self.paint.background, 0.8);
        }
        let mark = theme::text_on(fill);
        // A selected square carries a dot of the contrasting colour in its middle.
        let dot = (inner / 3).max(1);
        let dot_from = (inner - dot) / 2;
        let dots = dot_from..dot_from + dot;
        // Large squares in flight fill a band along their bottom with the percent.
        let band = (self.grid.cell >= class::BAND_FROM && look.percent > 0)
            .then(|| (inner - 2, inner * usize::from(look.percent) / 100));
        let band_color = mark.gamma_multiply(0.6);
        let [x0, y0] = self.grid.origin_px(i);
        let width = self.image.size[0];
        for y in 0..c {
            let start = (y0 + y) * width + x0;
            let Some(line) = self.image.pixels.get_mut(start..start + c) else {
                return;
            };
            for (x, px) in line.iter_mut().enumerate() {
                *px = if x >= inner || y >= inner {
                    Color32::TRANSPARENT
                } else if look.selected && dots.contains(&x) && dots.contains(&y) {
                    mark
                } else if band.is_some_and(|(top, w)| y >= top && x < w) {
                    band_color
                } else {
                    fill
                };
            }
        }
        if !self.whole {
            self.dirty.push(i);
        }
    }

    /// What changed since the last call: the whole image after a new layout or when more than
    /// half the lines changed, else per changed line the span from its first to its last
    /// changed square.
    pub fn take_patches(&mut self) -> Vec<Patch> {
        if std::mem::take(&mut self.whole) {
            self.dirty.clear();
            return vec![Patch::Whole(self.image.clone())];
        }
        if self.dirty.is_empty() {
            return Vec::new();
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let per_line = self.grid.per_line;
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for i in dirty {
            let (line, col) = (i / per_line, i % per_line);
            match spans.last_mut() {
                Some((l, _, last)) if *l == line => *last = col,
                _ => spans.push((line, col, col)),
            }
        }
        if spans.len() * 2 > self.grid.lines {
            return vec![Patch::Whole(self.image.clone())];
        }
        let c = self.grid.cell as usize;
        spans
            .into_iter()
            .map(|(line, first, last)| {
                let pos = [first * c, line * c];
                let size = [(last - first + 1) * c, c];
                Patch::Part(pos, self.image.region_by_pixels(pos, size))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paint() -> Paint {
        Paint {
            background: Color32::BLACK,
            highlight: None,
        }
    }

    fn grid(count: usize, cell: u32, per_line: usize) -> Grid {
        Grid {
            count,
            cell,
            per_line,
            lines: count.div_ceil(per_line),
        }
    }

    fn failed() -> Look {
        Look {
            class: class::class_of_status(crate::rollout::DeviceStatus::Failed),
            ..Look::default()
        }
    }

    #[test]
    fn a_changed_device_patches_its_square_only() {
        let g = grid(100, 3, 10);
        let mut canvas = Canvas::new(g, paint());
        for i in 0..100 {
            canvas.draw(i, Look::default());
        }
        // The first frame uploads the wall.
        let first = canvas.take_patches();
        assert!(matches!(first.as_slice(), [Patch::Whole(img)] if img.size == [30, 30]));
        assert!(canvas.take_patches().is_empty(), "nothing changed since");

        canvas.draw(43, failed());
        let patches = canvas.take_patches();
        let [Patch::Part(pos, img)] = patches.as_slice() else {
            panic!("one part: {patches:?}");
        };
        // Square 43: line 4, column 3, 3×3 texels.
        assert_eq!(*pos, [9, 12]);
        assert_eq!(img.size, [3, 3]);
        let red = class::color(failed().class);
        assert!(img.pixels.iter().all(|p| *p == red));
        assert_eq!(canvas.image().pixels[12 * 30 + 9], red);
        assert_ne!(
            canvas.image().pixels[12 * 30 + 8],
            red,
            "its left neighbour kept"
        );

        // Two on one line: one span from the first to the last.
        canvas.draw(41, failed());
        canvas.draw(47, failed());
        canvas.draw(90, failed());
        let patches = canvas.take_patches();
        assert_eq!(patches.len(), 2);
        assert!(matches!(&patches[0], Patch::Part([3, 12], img) if img.size == [21, 3]));
        assert!(matches!(&patches[1], Patch::Part([0, 27], img) if img.size == [3, 3]));

        // Most lines changed: the whole image, once.
        for line in 0..6 {
            canvas.draw(line * 10, failed());
        }
        assert!(matches!(
            canvas.take_patches().as_slice(),
            [Patch::Whole(_)]
        ));
    }

    #[test]
    fn squares_keep_a_gap_and_show_selection_and_percent() {
        let g = grid(4, 9, 2);
        let mut canvas = Canvas::new(g, paint());
        let look = Look {
            class: class::class_of_status(crate::rollout::DeviceStatus::Downloading),
            selected: true,
            percent: 50,
        };
        canvas.draw(3, look);
        let px = |x: usize, y: usize| canvas.image().pixels[y * 18 + x];
        let fill = class::color(look.class);
        // Square 3 starts at (9, 9); 8 inner texels, then the gap.
        assert_eq!(px(9, 9), fill);
        assert_eq!(px(17, 10), Color32::TRANSPARENT);
        assert_eq!(px(10, 17), Color32::TRANSPARENT);
        // The dot in the middle (8 / 3 = 2 texels from 3 to 4).
        assert_eq!(px(9 + 3, 9 + 3), theme::text_on(fill));
        assert_eq!(px(9 + 4, 9 + 4), theme::text_on(fill));
        assert_eq!(px(9 + 2, 9 + 2), fill);
        // The band: the bottom two inner lines, half the width.
        assert_ne!(px(9, 9 + 6), fill);
        assert_ne!(px(9 + 3, 9 + 7), fill);
        assert_eq!(px(9 + 4, 9 + 7), fill);
        // Nothing outside square 3 was touched.
        assert_eq!(px(0, 0), Color32::TRANSPARENT);

        // A highlighted class stays; the others are dimmed towards the background.
        let mut dim = Canvas::new(
            g,
            Paint {
                highlight: Some(failed().class),
                ..paint()
            },
        );
        dim.draw(0, failed());
        dim.draw(1, Look::default());
        assert_eq!(dim.image().pixels[0], class::color(failed().class));
        assert_ne!(dim.image().pixels[9], class::color(Look::default().class));
    }
}
