//! `aml-operator`: wiring only — parse flags, set up telemetry, hand over to the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "aml-operator", version, about = "Azure Machine Learning resources as Kubernetes objects")]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, env = "AML_LOG_FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller manager against the current Kubernetes cluster.
    Run(aml_operator::manager::RunArgs),
    /// Print the CustomResourceDefinitions, or write one file each into a folder (`--out-dir crds`).
    Crds {
        /// Write one YAML file per CRD into this folder instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Serve a local ARM + Entra token emulator over HTTPS.
    Emulator(aml_operator::emulator::EmulatorArgs),
    /// Without a cluster: show what applying manifests would change in Azure (exit 0: nothing,
    /// 2: changes pending, 1: error). Never writes to Azure.
    #[command(after_help = aml_operator::cli::CREDENTIALS_HELP)]
    Plan(aml_operator::cli::PlanArgs),
    /// Without a cluster: create or update the manifests' Azure resources until Ready, or delete
    /// them with --delete.
    #[command(after_help = aml_operator::cli::CREDENTIALS_HELP)]
    Apply(aml_operator::cli::ApplyArgs),
    /// Write manifests for the ML resources that already exist in a resource group.
    #[command(after_help = aml_operator::cli::CREDENTIALS_HELP)]
    Import(aml_operator::cli::ImportArgs),
    /// Ask a running operator's /readyz or /healthz over its --health-socket (the chart's exec
    /// probes): exit 0 when it answers 200, 1 otherwise.
    Probe(aml_operator::health::ProbeArgs),
    /// Measure the operator: ARM calls in steady state, convergence under ARM's write limit,
    /// memory, watch-to-ARM overhead, start time and binary size (see BENCHMARKS.md).
    Bench(aml_operator::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The kubelet starts this every probe period: no logging set-up, no runtime.
    if let Command::Probe(args) = &cli.command {
        return match aml_operator::health::probe(args) {
            Ok(body) => {
                println!("{body}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("{why}");
                ExitCode::FAILURE
            }
        };
    }
    // The one-shot commands print their own output; their logs default to warnings only. The
    // benchmark's output is its figures: logs only when RUST_LOG asks for them.
    let default_level = match cli.command {
        Command::Plan(_) | Command::Apply(_) | Command::Import(_) => "warn",
        _ => "info",
    };
    if !matches!(cli.command, Command::Bench(_)) || std::env::var_os("RUST_LOG").is_some() {
        aml_operator::telemetry::init(&cli.log_format, default_level);
    }
    aml_operator::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<u8, Box<dyn std::error::Error>> = runtime.block_on(async {
        let mut out = std::io::stdout();
        match cli.command {
            Command::Run(args) => aml_operator::manager::run(args).await?,
            Command::Crds { out_dir: None } => print!("{}", aml_operator::crd::to_yaml(aml_operator::controller::kinds::crds())?),
            Command::Crds { out_dir: Some(dir) } => {
                for path in aml_operator::crd::write_files(&dir, aml_operator::controller::kinds::crds())? {
                    println!("wrote {}", path.display());
                }
            }
            Command::Emulator(args) => aml_operator::emulator::run_cli(args).await?,
            Command::Plan(args) => return Ok(aml_operator::cli::plan(&args, None, &mut out).await?.exit_code()),
            Command::Apply(args) => {
                use std::io::IsTerminal;
                let progress = if out.is_terminal() { aml_operator::cli::Progress::Terminal } else { aml_operator::cli::Progress::Lines };
                return Ok(aml_operator::cli::apply(&args, None, &mut out, progress).await?.exit_code());
            }
            Command::Import(args) => return Ok(aml_operator::cli::import(&args, None, &mut out).await?.exit_code()),
            Command::Bench(args) => aml_operator::bench::run_cli(args).await?,
            Command::Probe(_) => {} // answered above, before the runtime
        }
        Ok(0)
    });
    // Do not wait for tasks still running (abandoned reconciles after a shutdown timeout or a
    // second signal): the process is done.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
