//! `newsrec`: clicks in, recommendations out. See `newsrec --help`.

use clap::Parser;

// The serving hot path is allocation-heavy (request parsing, list decoding, JSON); glibc's
// malloc showed as ~17 % of CPU under load, mimalloc's thread-local free lists avoid most of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = newsrec_cli::commands::Cli::parse();
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
