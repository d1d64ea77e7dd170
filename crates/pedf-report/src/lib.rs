//! Plots of pedf plans, as SVG or PNG (plotters).
//!
//! A plan plot has two panels: power at the bus (supply stacked above zero: PV used, battery
//! discharge, grid import; sinks below zero: battery charge, export; the load as a line; the
//! PV available dashed) over background bands shaded by the import price, and the battery's
//! stored energy with the import price below.
//!
//! Text needs a font: call [`use_font`] with TrueType bytes first (the binary loads DejaVu
//! Sans from the system). This crate writes the file it is asked to and nothing else.

#![warn(missing_docs)]

pub mod pdf;
pub mod sim;
pub mod statement;
pub mod subset;

use std::path::Path;

use pedf_core::plan::Plan;
use pedf_core::Park;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name does not end in .svg or .png.
    #[error("the plot file must end in .svg or .png")]
    Extension,
    /// No font was registered, or it could not be read.
    #[error("no usable font: {0}")]
    Font(String),
    /// Drawing or writing failed.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// Nothing to draw.
    #[error("the plan has no intervals")]
    Empty,
}

const FONT: &str = "sans-serif";

/// A labelled, coloured area of the power stack.
type Layer = (&'static str, RGBColor, Vec<(f64, f64)>);

/// Registers the TrueType font used for all text.
pub fn use_font(bytes: &'static [u8]) -> Result<(), PlotError> {
    register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| PlotError::Font("not a TrueType font".into()))
}

/// Draws a plan to `path` (.svg or .png, 1200 x 760 px).
pub fn plot_plan(plan: &Plan, park: &Park, path: &Path) -> Result<(), PlotError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let size = (1200, 760);
    match ext.as_deref() {
        Some("svg") => draw(SVGBackend::new(path, size).into_drawing_area(), plan, park),
        Some("png") => draw(
            BitMapBackend::new(path, size).into_drawing_area(),
            plan,
            park,
        ),
        _ => Err(PlotError::Extension),
    }
}

fn err<E: std::fmt::Debug>(e: E) -> PlotError {
    let text = format!("{e:?}");
    if text.contains("FontUnavailable") || text.contains("Font") {
        PlotError::Font("no font registered (PNG and SVG text need DejaVu Sans: Debian package fonts-dejavu-core)".into())
    } else {
        PlotError::Draw(text)
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    plan: &Plan,
    park: &Park,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let iv = &plan.intervals;
    if iv.is_empty() {
        return Err(PlotError::Empty);
    }
    let n = iv.len();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(500);
    let x_hours = |i: usize| i as f64 * f64::from(plan.interval_minutes) / 60.0;
    let hours = x_hours(n);

    let supply_max = iv
        .iter()
        .map(|i| (i.pv_used_kw + i.battery_discharge_kw + i.grid_import_kw).max(i.pv_available_kw))
        .fold(0.0, f64::max);
    let sink_max = iv
        .iter()
        .map(|i| i.battery_charge_kw + i.grid_export_kw / 0.9)
        .fold(0.0, f64::max);
    let y_top = (supply_max * 1.1).max(10.0);
    let y_bottom = -(sink_max * 1.1).max(10.0);
    let title = format!(
        "{} {}: plan ({:?}), objective {:.0} CNY, {:.0} kg CO2",
        park.id,
        iv[0].start.format("%Y-%m-%d"),
        plan.strategy,
        plan.objective_cny,
        plan.carbon_kg
    );
    let mut chart = ChartBuilder::on(&top)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..hours, y_bottom..y_top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hour (local)")
        .y_desc("kW at the DC bus")
        .x_labels(13)
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;

    // Price bands: darker red = dearer import.
    let pmin = iv
        .iter()
        .map(|i| i.import_price_cny_per_kwh)
        .fold(f64::INFINITY, f64::min);
    let pmax = iv
        .iter()
        .map(|i| i.import_price_cny_per_kwh)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = (pmax - pmin).max(1e-9);
    chart
        .draw_series((0..n).map(|k| {
            let level = (iv[k].import_price_cny_per_kwh - pmin) / span;
            let color = RGBColor(
                255,
                (245.0 - 70.0 * level) as u8,
                (235.0 - 120.0 * level) as u8,
            );
            Rectangle::new(
                [(x_hours(k), y_bottom), (x_hours(k + 1), y_top)],
                color.filled(),
            )
        }))
        .map_err(err)?;

    // Stacked supply, drawn from the top layer down so each area covers the one below.
    let step = |f: &dyn Fn(usize) -> f64| -> Vec<(f64, f64)> {
        (0..n)
            .flat_map(|k| [(x_hours(k), f(k)), (x_hours(k + 1), f(k))])
            .collect()
    };
    let pv = |k: usize| iv[k].pv_used_kw;
    let pv_bat = |k: usize| pv(k) + iv[k].battery_discharge_kw;
    let all = |k: usize| pv_bat(k) + iv[k].grid_import_kw;
    let layers: [Layer; 3] = [
        ("grid import", RGBColor(120, 120, 140), step(&all)),
        ("battery discharge", RGBColor(60, 170, 90), step(&pv_bat)),
        ("PV used", RGBColor(250, 190, 40), step(&pv)),
    ];
    for (label, color, pts) in layers {
        chart
            .draw_series(AreaSeries::new(pts, 0.0, color.mix(0.85)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    let charge = |k: usize| -iv[k].battery_charge_kw;
    let charge_export = |k: usize| charge(k) - iv[k].grid_export_kw;
    for (label, color, pts) in [
        ("export (AC)", RGBColor(150, 90, 200), step(&charge_export)),
        ("battery charge", RGBColor(60, 110, 220), step(&charge)),
    ] {
        chart
            .draw_series(AreaSeries::new(pts, 0.0, color.mix(0.85)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    let load = |k: usize| iv[k].fixed_load_kw + iv[k].flexible_load_kw + iv[k].ev_kw;
    chart
        .draw_series(LineSeries::new(step(&load), BLACK.stroke_width(2)))
        .map_err(err)?
        .label("load incl. EV")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(2)));
    let avail = |k: usize| iv[k].pv_available_kw;
    chart
        .draw_series(DashedLineSeries::new(
            step(&avail),
            6,
            4,
            RGBColor(200, 120, 0).stroke_width(1),
        ))
        .map_err(err)?
        .label("PV available")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], RGBColor(200, 120, 0)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(err)?;

    // Bottom: stored energy and import price.
    let soc_max = iv
        .iter()
        .map(|i| i.battery_soc_kwh)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut lower = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..hours, 0.0..soc_max)
        .map_err(err)?
        .set_secondary_coord(0.0..hours, 0.0..(pmax.max(0.0) * 1.2).max(0.1));
    lower
        .configure_mesh()
        .y_desc("stored energy, kWh")
        .x_labels(13)
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    lower
        .configure_secondary_axes()
        .y_desc("import price, CNY/kWh")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    let soc: Vec<(f64, f64)> = (0..n)
        .map(|k| (x_hours(k + 1), iv[k].battery_soc_kwh))
        .collect();
    lower
        .draw_series(LineSeries::new(soc, RGBColor(60, 110, 220).stroke_width(2)))
        .map_err(err)?
        .label("stored energy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], RGBColor(60, 110, 220)));
    let price = |k: usize| iv[k].import_price_cny_per_kwh;
    lower
        .draw_secondary_series(LineSeries::new(step(&price), RED.stroke_width(1)))
        .map_err(err)?
        .label("import price")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], RED));
    lower
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
