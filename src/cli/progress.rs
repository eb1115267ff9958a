//! What `train` shows while it runs: a line per log point, kept above a progress bar (with its
//! rate and the time left) in a terminal and printed alone otherwise; the `--history` file; the
//! curves that `--plot` draws.

use super::*;
use crate::train::BestPoint;

/// Reports a run's log points as they come.
pub(super) struct Report {
    dtype: DType,
    loss_name: String,
    patience: u64,
    bar: Option<indicatif::ProgressBar>,
    history: Option<History>,
    pub curves: Curves,
}

/// Everything the run reported, for the plot.
#[derive(Default)]
pub(super) struct Curves {
    /// The mean training loss at each log point.
    pub loss: Vec<(f64, f64)>,
    /// The loss at evenly spaced steps, when traced.
    pub trace: Vec<(f64, f64)>,
    /// Each metric on the training rows, by name.
    pub training: Vec<(String, Vec<(f64, f64)>)>,
    /// The loss, then each metric, on the validation rows.
    pub validation: Vec<(String, Vec<(f64, f64)>)>,
    /// The log point early stopping went back to.
    pub restored: Option<BestPoint>,
}

struct History {
    path: PathBuf,
    writer: std::io::BufWriter<std::fs::File>,
    header: bool,
}

impl Report {
    pub fn new(
        compiled: &CompiledModel,
        patience: u64,
        history: Option<&Path>,
    ) -> Result<Report, CliError> {
        let history = match history {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| {
                    CliError::BadInput(format!("cannot write {}: {e}", p.display()))
                })?;
                Some(History {
                    path: p.to_path_buf(),
                    writer: std::io::BufWriter::new(f),
                    header: false,
                })
            }
            None => None,
        };
        Ok(Report {
            dtype: compiled.model.graph().dtype,
            loss_name: compiled.model.loss_name.clone(),
            patience,
            bar: progress_bar(),
            history,
            curves: Curves::default(),
        })
    }

    /// Shows one log point: its line, the bar, a history row, the curves' points.
    pub fn log(&mut self, p: &Progress) {
        let line = self.line(p);
        match &self.bar {
            Some(b) => {
                b.set_length(p.end);
                b.set_position(p.step);
                b.set_message(format!(
                    "{} {}",
                    self.loss_name,
                    decimal::scientific(p.loss, self.dtype)
                ));
                // Above the bar, where it stays.
                b.println(line);
            }
            None => say!("{line}"),
        }
        if let Some(best) = &p.restored {
            let message = self.early_stop(p, best);
            match &self.bar {
                Some(b) => b.println(message),
                None => say!("{message}"),
            }
        }
        self.write_history(p);
        self.record(p);
    }

    /// `step 300  epoch 3  training loss 5.2e-2  accuracy 0.97  validation loss …`
    fn line(&self, p: &Progress) -> String {
        let loss = decimal::scientific(p.loss, self.dtype);
        let mut line = format!(
            "step {:>8}  epoch {:>5}  training {} {loss}",
            p.step, p.epoch, self.loss_name
        );
        for (name, v) in &p.training {
            line += &format!("  {name} {}", decimal::shortest(*v, self.dtype));
        }
        for (k, (name, v)) in p.validation.iter().enumerate() {
            line += &match k {
                0 => format!(
                    "  validation {name} {}",
                    decimal::scientific(*v, self.dtype)
                ),
                _ => format!("  {name} {}", decimal::shortest(*v, self.dtype)),
            };
        }
        line
    }

    fn early_stop(&self, p: &Progress, best: &BestPoint) -> String {
        let loss = &self.loss_name;
        format!(
            "early stop at step {} (epoch {}): validation {loss} did not improve for {} log points; restored the parameters of step {} (epoch {}), validation {loss} {}",
            p.step,
            p.epoch,
            self.patience,
            best.step,
            best.epoch,
            decimal::scientific(best.validation_loss, self.dtype)
        )
    }

    fn write_history(&mut self, p: &Progress) {
        use std::io::Write as _;
        let Some(h) = &mut self.history else {
            return;
        };
        if !h.header {
            let names: String = p
                .training
                .iter()
                .map(|(n, _)| format!(",{n}"))
                .chain(p.validation.iter().map(|(n, _)| format!(",val_{n}")))
                .collect();
            let _ = writeln!(h.writer, "step,epoch,{}{names}", self.loss_name);
            h.header = true;
        }
        let values: String = p
            .training
            .iter()
            .chain(&p.validation)
            .map(|(_, v)| format!(",{}", decimal::shortest(*v, self.dtype)))
            .collect();
        let loss = decimal::shortest(p.loss, self.dtype);
        let _ = writeln!(h.writer, "{},{},{loss}{values}", p.step, p.epoch);
    }

    fn record(&mut self, p: &Progress) {
        let c = &mut self.curves;
        let step = p.step as f64;
        c.loss.push((step, p.loss));
        c.trace
            .extend(p.trace.iter().map(|&(s, loss)| (s as f64, loss)));
        push_series(&mut c.training, &p.training, step);
        push_series(&mut c.validation, &p.validation, step);
        if p.restored.is_some() {
            c.restored = p.restored;
        }
    }

    /// Clears the bar and writes the history file out.
    pub fn finish(self) -> Result<Curves, CliError> {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(mut h) = self.history {
            use std::io::Write as _;
            h.writer.flush().map_err(|e| {
                CliError::BadInput(format!("cannot write {}: {e}", h.path.display()))
            })?;
        }
        Ok(self.curves)
    }
}

impl Curves {
    /// The panels of `--plot`: the losses, then the metrics (training and validation) when the
    /// model has some, and a marker at the point early stopping restored.
    pub fn figure(
        self,
        loss_name: &str,
        minibatches: bool,
    ) -> (Vec<crate::plot::Panel>, Option<crate::plot::Marker>) {
        let mut losses = vec![];
        match (self.trace.is_empty(), minibatches) {
            (true, _) => losses.push((format!("training {loss_name}"), self.loss)),
            (false, false) => losses.push((format!("training {loss_name}"), self.trace)),
            (false, true) => {
                losses.push((format!("training {loss_name}, minibatch"), self.trace));
                losses.push((format!("training {loss_name}, epoch mean"), self.loss));
            }
        }
        let mut validation = self.validation.into_iter();
        if let Some((_, points)) = validation.next() {
            losses.push((format!("validation {loss_name}"), points));
        }
        let mut panels = vec![crate::plot::Panel {
            y_label: loss_name.to_string(),
            series: losses,
        }];
        let mut metrics: Vec<crate::plot::Series> = vec![];
        for (name, points) in self.training {
            metrics.push((format!("training {name}"), points));
        }
        for (name, points) in validation {
            metrics.push((format!("validation {name}"), points));
        }
        if !metrics.is_empty() {
            let mut names: Vec<&str> = metrics
                .iter()
                .map(|(n, _)| n.split_once(' ').map_or(n.as_str(), |(_, m)| m))
                .collect();
            names.sort_unstable();
            names.dedup();
            panels.push(crate::plot::Panel {
                y_label: names.join(", "),
                series: metrics,
            });
        }
        let marker = self.restored.map(|b| crate::plot::Marker {
            x: b.step as f64,
            label: format!("early stopping restored step {}", b.step),
        });
        (panels, marker)
    }
}

fn push_series(series: &mut Vec<(String, Vec<(f64, f64)>)>, values: &[(String, f64)], x: f64) {
    for (k, (name, v)) in values.iter().enumerate() {
        if series.len() <= k {
            series.push((name.clone(), vec![]));
        }
        series[k].1.push((x, *v));
    }
}

/// A progress bar on standard output when it is a terminal; `None` (plain lines) otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps  {rate}  ETA {eta}  {msg}",
    )
    .ok()?
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&readable_rate(state.per_sec()));
        },
    );
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stdout());
    bar.set_style(style);
    Some(bar)
}

/// Steps per second with three significant digits and an SI prefix: `12.3k steps/s`.
fn readable_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "— steps/s".into();
    }
    let (value, prefix) = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(scale, _)| per_sec >= *scale)
        .map_or((per_sec, ""), |(scale, p)| (per_sec / scale, p));
    let decimals = match value {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.decimals$}{prefix} steps/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_three_digits_and_a_prefix() {
        assert_eq!(readable_rate(0.5), "0.50 steps/s");
        assert_eq!(readable_rate(12.34), "12.3 steps/s");
        assert_eq!(readable_rate(4567.0), "4.57k steps/s");
        assert_eq!(readable_rate(31_250_000.0), "31.2M steps/s");
        assert_eq!(readable_rate(f64::NAN), "— steps/s");
    }
}
