//! The wall: the tile view's compact form for fleets too large for cards (or when the operator
//! picks it), made for a projector at a dock site. Every shown device is a square of a few
//! points, coloured by status with the tiles' palette, in the table's filtered and sorted
//! order, sized so the shown fleet fits the view (it scrolls only below [`layout::MIN_CELL`]).
//! Over it, a legend in large type counts each status; a click on an entry singles its devices
//! out (the others dim), which does not depend on telling colours apart. Hovering a square
//! shows the device's details; a click inspects it, a Ctrl / Shift click selects it (a
//! selected square carries a dot).
//!
//! The cost follows the changes, not the fleet: the wall is one texture drawn as one
//! rectangle; a frame relooks only the rows the snapshot says changed and the squares whose
//! device moved (`state`), repaints their texels and uploads the changed spans (`canvas`); the
//! pointer finds its device by arithmetic (`layout`).

mod canvas;
mod class;
mod layout;
mod state;

use std::collections::BTreeSet;

use egui::{Color32, RichText, Sense, Stroke, StrokeKind, Ui, vec2};

pub use canvas::{Canvas, Paint, Patch};
pub use layout::{Grid, cell_center};
pub use state::{WallInput, WallState};

use super::tiles;
use crate::device_id::DeviceId;
use crate::i18n::tr;

/// In the tile view's automatic form, more shown devices than this make a wall (cards of this
/// many already take a dozen screens of scrolling).
pub const WALL_ABOVE: usize = 1_000;

/// The legend's type size: read from across a room.
const LEGEND_TEXT: f32 = 22.0;

pub fn wall_ui(
    ui: &mut Ui,
    wall: &mut WallState,
    input: &WallInput<'_>,
    selection: &mut BTreeSet<DeviceId>,
    inspected: &mut Option<DeviceId>,
) {
    // Percents show from a square size on (the last frame's: the legend above the wall needs
    // the counts before this frame's size is known; a change of size repaints in the next).
    let bands = wall.grid().is_some_and(|g| g.cell >= class::BAND_FROM);
    wall.sync(ui.ctx().cumulative_pass_nr(), input, selection, bands);
    legend_ui(ui, wall);
    let shown = input.visible.len();
    let avail = ui.available_size();
    let grid = Grid::fit(shown, avail.x, avail.y);
    let paint = Paint {
        background: ui.visuals().panel_fill,
        highlight: wall.highlight,
    };
    // A texture larger than the GPU takes (2,048 texels on some) would not be drawn.
    let max_side = ui.input(|i| i.max_texture_side);
    if grid.size_px().iter().any(|side| *side > max_side) {
        ui.weak(tr!("ui.wall.too_narrow"));
        return;
    }
    let Some(texture) = wall.render(ui.ctx(), grid, paint) else {
        return;
    };
    egui::ScrollArea::vertical()
        .id_salt("wall")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let (rect, response) = ui.allocate_exact_size(grid.size(), Sense::click());
            response.widget_info(|| {
                egui::WidgetInfo::labeled(
                    egui::Role::Image,
                    true,
                    tr!("ui.wall.label", count = shown, size = grid.cell),
                )
            });
            let painter = ui.painter_at(rect);
            let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
            painter.image(texture, rect, uv, Color32::WHITE);
            let outline = |square: usize, width: f32| {
                let r = grid.cell_rect(rect.min, square).expand(width);
                painter.rect_stroke(
                    r,
                    0.0,
                    Stroke::new(width, ui.visuals().strong_text_color()),
                    StrokeKind::Inside,
                );
            };
            if let Some(square) = inspected
                .as_ref()
                .and_then(|id| state::position(input.rows, id))
                .and_then(|index| wall.square_of(index))
            {
                outline(square, 2.0);
            }
            let pointed = |pos: Option<egui::Pos2>| {
                let square = grid.cell_at(rect.min, pos?)?;
                let index = wall.row_of(square)?;
                Some((square, index))
            };
            let hovered = pointed(response.hover_pos());
            if let Some((square, _)) = hovered {
                outline(square, 1.5);
            }
            if (response.clicked() || response.secondary_clicked())
                && let Some((_, index)) = pointed(response.interact_pointer_pos())
                && let Some(row) = state::row_at(input.rows, index)
            {
                let id = &row.record.id;
                let modifiers = ui.input(|i| i.modifiers);
                let select =
                    response.clicked() && (modifiers.command || modifiers.ctrl || modifiers.shift);
                if select {
                    let now = if selection.contains(id) {
                        selection.remove(id);
                        false
                    } else {
                        selection.insert(id.clone());
                        true
                    };
                    wall.set_selected(index, now, input.rows, selection.len());
                } else {
                    *inspected = Some(id.clone());
                }
            }
            if let Some(row) = hovered.and_then(|(_, index)| state::row_at(input.rows, index)) {
                let caption = tiles::tile_caption(row);
                response.on_hover_ui_at_pointer(|ui| {
                    tiles::tile_details_ui(ui, row, &caption, &tr!("ui.wall.hint"));
                });
            }
        });
}

/// The counts per status in large type; a click singles a status out on the wall.
fn legend_ui(ui: &mut Ui, wall: &mut WallState) {
    let counts = *wall.counts();
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = vec2(6.0, 6.0);
        for c in class::LEGEND_ORDER {
            let n = counts.get(usize::from(c)).copied().unwrap_or(0);
            let on = wall.highlight == Some(c);
            if n == 0 && !on {
                continue;
            }
            let text = format!("{} {n}", class::label(c));
            // Swatch and words wrap as one: a new line when both do not fit.
            let words = ui
                .fonts_mut(|f| {
                    f.layout_no_wrap(
                        text.clone(),
                        egui::FontId::proportional(LEGEND_TEXT),
                        Color32::WHITE,
                    )
                })
                .size()
                .x;
            let needed = LEGEND_TEXT + words + 4.0 * ui.spacing().button_padding.x;
            if ui.available_size_before_wrap().x < needed {
                ui.end_row();
            }
            let (swatch, _) =
                ui.allocate_exact_size(vec2(LEGEND_TEXT, LEGEND_TEXT), Sense::hover());
            ui.painter().rect_filled(swatch, 4.0, class::color(c));
            let entry = ui
                .selectable_label(on, RichText::new(text).size(LEGEND_TEXT))
                .on_hover_text(tr!("ui.wall.legend_hover"));
            if entry.clicked() {
                wall.highlight = if on { None } else { Some(c) };
            }
            ui.add_space(10.0);
        }
        ui.weak(tr!("ui.wall.dot"));
    });
}
