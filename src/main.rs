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
    /// Measure the operator: ARM calls in steady state, convergence under ARM's write limit,
    /// memory, watch-to-ARM overhead, start time and binary size (see BENCHMARKS.md).
    Bench(aml_operator::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The benchmark's own output is its figures: logs only when RUST_LOG asks for them.
    if !matches!(cli.command, Command::Bench(_)) || std::env::var_os("RUST_LOG").is_some() {
        aml_operator::telemetry::init(&cli.log_format);
    }
    aml_operator::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => aml_operator::manager::run(args).await?,
            Command::Crds { out_dir: None } => print!("{}", aml_operator::crd::to_yaml()?),
            Command::Crds { out_dir: Some(dir) } => {
                for path in aml_operator::crd::write_files(&dir)? {
                    println!("wrote {}", path.display());
                }
            }
            Command::Emulator(args) => aml_operator::emulator::run_cli(args).await?,
            Command::Bench(args) => aml_operator::bench::run_cli(args).await?,
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
