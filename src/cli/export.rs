//! `adjoint export`: the model for another engine (`--to jax`), or adjoint's own values at a
//! checkpoint (`--values`), which an export is checked against.

use super::*;
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum ExportTarget {
    /// A Python module on JAX and optax: loss, metrics, outputs, optimizer, training step.
    Jax,
    /// An ONNX model (opset 17) of the outputs and metrics, with --checkpoint's parameters.
    Onnx,
}

#[derive(clap::Args)]
pub(super) struct ExportArgs {
    /// The model file (.dsl).
    file: PathBuf,
    /// The engine to write the model for.
    #[arg(long, value_enum, required_unless_present = "values")]
    to: Option<ExportTarget>,
    /// Where to write it (.py for JAX, .onnx for ONNX, .safetensors for --values).
    #[arg(short, long)]
    out: PathBuf,
    /// Instead of code, write adjoint's loss, metrics and gradient at --checkpoint's
    /// parameters on the model's data (all rows, in f64), as safetensors: `loss`,
    /// `metric/NAME`, `grad/PARAM`.
    #[arg(long, conflicts_with = "to", requires = "checkpoint")]
    values: bool,
    /// The parameters for ONNX and --values (a checkpoint written by `train --save`).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// CSV data for --values (overrides the model's `data`).
    #[arg(long, requires = "values")]
    data: Option<PathBuf>,
}

pub(super) fn export(args: &ExportArgs) -> Result<(), CliError> {
    match (args.to, &args.checkpoint) {
        (Some(ExportTarget::Jax), _) => jax(args),
        (Some(ExportTarget::Onnx), Some(ckpt)) => onnx(args, ckpt),
        (Some(ExportTarget::Onnx), None) => Err(CliError::BadInput(
            "--to onnx needs --checkpoint: the parameters become the model's initializers".into(),
        )),
        (None, Some(ckpt)) => values(args, ckpt),
        (None, None) => Err(CliError::BadInput(
            "export needs --to or --values with --checkpoint".into(),
        )),
    }
}

fn jax(args: &ExportArgs) -> Result<(), CliError> {
    outputs::with_extension("--out", &args.out, "py")?;
    let (file, model, warnings) = load_model(&args.file)?;
    eprint!("{}", render_all(&warnings, &file));
    let graphs = compile::with_big_stack(|| compile::graphs(&model));
    let source = crate::export::Source {
        model: &model,
        graphs: &graphs,
        file: &file,
    };
    let code = crate::export::jax::module(&source).map_err(|diags| {
        eprint!("{}", render_all(&diags, &file));
        CliError::Diagnosed
    })?;
    std::fs::write(&args.out, code)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.out.display())))?;
    say!("wrote {}", args.out.display());
    Ok(())
}

fn onnx(args: &ExportArgs, ckpt: &Path) -> Result<(), CliError> {
    outputs::with_extension("--out", &args.out, "onnx")?;
    let (file, model, warnings) = load_model(&args.file)?;
    eprint!("{}", render_all(&warnings, &file));
    let compiled = compile_model(model, &file)?;
    let mut trainer = Trainer::new(&compiled, 0);
    crate::resume::load_params(&mut trainer, ckpt).map_err(bad_input)?;
    let params: Vec<Vec<f64>> = trainer.params.iter().map(|b| b.to_f64()).collect();
    let states: Vec<Vec<f64>> = trainer.model_state.iter().map(|b| b.to_f64()).collect();
    let source = crate::export::Source {
        model: &compiled.model,
        graphs: &compiled.graphs,
        file: &file,
    };
    let bytes = crate::export::onnx::model(&source, &params, &states).map_err(|diags| {
        eprint!("{}", render_all(&diags, &file));
        CliError::Diagnosed
    })?;
    std::fs::write(&args.out, bytes)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.out.display())))?;
    say!("wrote {}", args.out.display());
    Ok(())
}

/// Values in f64 under their names, as a safetensors file.
fn write_values(path: &Path, values: &[(String, Vec<usize>, Vec<f64>)]) -> Result<(), CliError> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = values
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = values
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F64, shape.clone(), b).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let file = safetensors::tensor::serialize(views, None).map_err(failed)?;
    std::fs::write(path, file)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))
}

fn values(args: &ExportArgs, ckpt: &Path) -> Result<(), CliError> {
    outputs::with_extension("--out", &args.out, "safetensors")?;
    let (file, model, _) = load_model(&args.file)?;
    refuse_unread_data(&model, args.data.as_deref(), &[])?;
    let data_path = data_path(&model, args.data.as_deref(), &args.file);
    let compiled = compile_model(model, &file)?;
    let dataset = load_data(&compiled.model, data_path.as_deref(), &args.file, &[])?;
    crate::train::check_memory(&compiled, dataset.as_ref(), None).map_err(bad_input)?;
    let mut trainer = Trainer::new(&compiled, 0);
    crate::resume::load_params(&mut trainer, ckpt).map_err(bad_input)?;
    let dtype = compiled.model.graph().dtype;
    let (inputs, rows) = match &dataset {
        Some(d) => {
            trainer.bound_dims = d.dims.clone();
            (crate::train::in_dtype(&d.inputs, dtype), d.n_rows)
        }
        None => (std::borrow::Cow::Owned(vec![]), 0),
    };
    let loss = trainer.value_and_grad(&inputs, rows).map_err(failed)?;
    let mut out = vec![("loss".to_string(), vec![], vec![loss])];
    for (i, p) in compiled.model.graph().params.iter().enumerate() {
        let grad = trainer.gradient(i, rows).expect("just computed").to_f64();
        let shape = p.shape.as_fixed().unwrap_or_default();
        out.push((format!("grad/{}", p.name), shape, grad));
    }
    for m in trainer
        .evaluate_metrics(&inputs, rows)
        .map_err(failed)?
        .into_iter()
        .skip(1)
    {
        let shape = if m.is_vector {
            vec![m.values.len()]
        } else {
            vec![]
        };
        out.push((format!("metric/{}", m.name), shape, m.values));
    }
    if compiled.graphs.training.is_some() {
        // The training step differs (dropout, batch statistics): its values at the checkpoint
        // too, with the masks of the step that would follow it.
        crate::resume::load_step(&mut trainer, ckpt).map_err(bad_input)?;
        let step = trainer.step_values(&inputs, rows).map_err(failed)?;
        let graph = compiled.model.graph();
        out.push(("train/loss".to_string(), vec![], vec![step.loss]));
        for (p, grad) in graph.params.iter().zip(step.grads) {
            let shape = p.shape.as_fixed().unwrap_or_default();
            out.push((format!("train/grad/{}", p.name), shape, grad));
        }
        for (s, next) in graph.states.iter().zip(step.states) {
            let shape = s.shape.as_fixed().unwrap_or_default();
            out.push((format!("train/state.{}", s.name), shape, next));
        }
    }
    write_values(&args.out, &out)?;
    say!("wrote {}", args.out.display());
    Ok(())
}
