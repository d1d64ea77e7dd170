//! Plots of a backtest (`pedf simulate`): the strategies compared month by month, and one
//! week of grid power and battery state under each.

use std::path::Path;

use plotters::prelude::*;

use crate::{err, PlotError, FONT};

/// One strategy's series for the plots.
pub struct StrategySeries {
    /// The strategy's name (none, rule, optimized).
    pub name: String,
    /// Per month: (label, net cost CNY, Scope 2 t CO2).
    pub monthly: Vec<(String, f64, f64)>,
    /// One week (or less), per interval: grid kW (+import) and SoC %.
    pub week_grid_kw: Vec<f64>,
    /// The same week's battery state of charge, %.
    pub week_soc_pct: Vec<f64>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(120, 120, 140),
    RGBColor(60, 110, 220),
    RGBColor(220, 90, 40),
    RGBColor(60, 170, 90),
];

fn backend_size(path: &Path) -> Result<bool, PlotError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok(true),
        Some("png") => Ok(false),
        _ => Err(PlotError::Extension),
    }
}

/// Monthly net cost and Scope 2 emissions per strategy, two panels (1200 x 800).
pub fn plot_comparison(
    title: &str,
    series: &[StrategySeries],
    path: &Path,
) -> Result<(), PlotError> {
    let size = (1200, 800);
    if backend_size(path)? {
        draw_comparison(
            SVGBackend::new(path, size).into_drawing_area(),
            title,
            series,
        )
    } else {
        draw_comparison(
            BitMapBackend::new(path, size).into_drawing_area(),
            title,
            series,
        )
    }
}

fn draw_comparison<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[StrategySeries],
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let months = series.first().map_or(0, |s| s.monthly.len());
    if months == 0 {
        return Err(PlotError::Empty);
    }
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FONT, 22)).map_err(err)?;
    let panels = root.split_evenly((2, 1));
    let labels: Vec<String> = series[0].monthly.iter().map(|m| m.0.clone()).collect();
    for (p, (what, pick)) in panels.iter().zip([
        ("net cost, CNY per month", 1usize),
        ("Scope 2 (location-based), t CO2 per month", 2usize),
    ]) {
        let value = |m: &(String, f64, f64)| if pick == 1 { m.1 } else { m.2 };
        let max = series
            .iter()
            .flat_map(|s| s.monthly.iter().map(value))
            .fold(0.0, f64::max);
        let min = series
            .iter()
            .flat_map(|s| s.monthly.iter().map(value))
            .fold(0.0, f64::min);
        let mut chart = ChartBuilder::on(p)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(
                -0.5..(months as f64 - 0.5),
                (min * 1.1)..(max * 1.1).max(1.0),
            )
            .map_err(err)?;
        let l = labels.clone();
        chart
            .configure_mesh()
            .y_desc(what)
            .x_labels(months.min(12))
            .x_label_formatter(&move |x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    l.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let width = 0.8 / series.len() as f64;
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let off = -0.4 + width * k as f64;
            chart
                .draw_series(s.monthly.iter().enumerate().map(|(i, m)| {
                    let x0 = i as f64 + off;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.95, value(m))], color.filled())
                }))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Grid power and battery SoC over the chosen week, one line per strategy (1200 x 800).
pub fn plot_week(
    title: &str,
    interval_minutes: u32,
    series: &[StrategySeries],
    path: &Path,
) -> Result<(), PlotError> {
    let size = (1200, 800);
    if backend_size(path)? {
        draw_week(
            SVGBackend::new(path, size).into_drawing_area(),
            title,
            interval_minutes,
            series,
        )
    } else {
        draw_week(
            BitMapBackend::new(path, size).into_drawing_area(),
            title,
            interval_minutes,
            series,
        )
    }
}

fn draw_week<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    interval_minutes: u32,
    series: &[StrategySeries],
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let n = series.first().map_or(0, |s| s.week_grid_kw.len());
    if n == 0 {
        return Err(PlotError::Empty);
    }
    let hours = |i: usize| i as f64 * f64::from(interval_minutes) / 60.0;
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FONT, 22)).map_err(err)?;
    let (top, bottom) = root.split_vertically(460);
    let gmax = series
        .iter()
        .flat_map(|s| s.week_grid_kw.iter().copied())
        .fold(10.0, f64::max);
    let gmin = series
        .iter()
        .flat_map(|s| s.week_grid_kw.iter().copied())
        .fold(-10.0, f64::min);
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..hours(n), (gmin * 1.1)..(gmax * 1.1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hours from the week's start (local)")
        .y_desc("grid kW (+import / -export)")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.week_grid_kw
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (hours(i), *v)),
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)?;
    let mut soc = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..hours(n), 0.0..100.0)
        .map_err(err)?;
    soc.configure_mesh()
        .y_desc("battery SoC %")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        soc.draw_series(LineSeries::new(
            s.week_soc_pct
                .iter()
                .enumerate()
                .map(|(i, v)| (hours(i), *v)),
            color.stroke_width(2),
        ))
        .map_err(err)?;
    }
    root.present().map_err(err)
}
