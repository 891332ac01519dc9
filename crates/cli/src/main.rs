//! `newsrec`: clicks in, recommendations out. See `newsrec --help`.

use clap::Parser;

// The serving hot path is allocation-heavy (request parsing, list decoding, JSON); glibc's
// malloc showed as ~17 % of CPU under load, mimalloc's thread-local free lists avoid most of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = newsrec_cli::commands::Cli::parse();
    if cli.command.is_batch_job() {
        // No transparent huge pages for a batch job. The allocator asks for them, and a job that
        // frees and reuses buffers batch after batch then has the kernel zero whole 2 MiB pages
        // again and again, and partly used huge pages count whole in its memory: on the
        // 20M-click daily run that was 12 s of system time (3 s without) and 2.3 GB of peak RSS
        // (1.2 GB without). Inherited by the job's child processes.
        #[cfg(target_os = "linux")]
        if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
            eprintln!("warning: cannot turn transparent huge pages off for this job: {error}");
        }
    }
    newsrec_cli::commands::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(newsrec_cli::commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(newsrec_cli::commands::exit_code(&error))
        }
    }
}
