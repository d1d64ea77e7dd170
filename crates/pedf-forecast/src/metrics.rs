//! Forecast error metrics.

/// Errors of a forecast against what happened, over the pairs where both are known.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ErrorMetrics {
    /// Number of pairs.
    pub n: usize,
    /// Mean absolute error, in the series' unit.
    pub mae: f64,
    /// Root mean square error.
    pub rmse: f64,
    /// Mean of forecast - actual (positive: the forecast is too high).
    pub bias: f64,
    /// MAE divided by the normaliser given (installed capacity for PV, mean demand for
    /// loads), a fraction.
    pub nmae: f64,
}

/// Metrics of `forecast` against `actual` (same length), normalised by `normaliser`.
pub fn error_metrics(forecast: &[f64], actual: &[f64], normaliser: f64) -> ErrorMetrics {
    let n = forecast.len().min(actual.len());
    if n == 0 {
        return ErrorMetrics::default();
    }
    let (mut abs, mut sq, mut sum) = (0.0, 0.0, 0.0);
    for (f, a) in forecast.iter().zip(actual) {
        let e = f - a;
        abs += e.abs();
        sq += e * e;
        sum += e;
    }
    let nf = n as f64;
    let mae = abs / nf;
    ErrorMetrics {
        n,
        mae,
        rmse: (sq / nf).sqrt(),
        bias: sum / nf,
        nmae: if normaliser > 0.0 {
            mae / normaliser
        } else {
            f64::NAN
        },
    }
}

impl std::fmt::Display for ErrorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n {}, MAE {:.2}, RMSE {:.2}, bias {:+.2}, nMAE {:.1} %",
            self.n,
            self.mae,
            self.rmse,
            self.bias,
            self.nmae * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_known_series() {
        let m = error_metrics(&[1.0, 2.0, 3.0, 4.0], &[1.0, 1.0, 4.0, 6.0], 10.0);
        assert_eq!(m.n, 4);
        assert!((m.mae - 1.0).abs() < 1e-12);
        assert!((m.rmse - (6.0f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((m.bias - (-0.5)).abs() < 1e-12);
        assert!((m.nmae - 0.1).abs() < 1e-12);
        assert_eq!(error_metrics(&[], &[], 1.0).n, 0);
        let perfect = error_metrics(&[2.0, 3.0], &[2.0, 3.0], 1.0);
        assert_eq!((perfect.mae, perfect.rmse, perfect.bias), (0.0, 0.0, 0.0));
    }
}
