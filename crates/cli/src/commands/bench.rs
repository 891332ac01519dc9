//! `newsrec bench …`: runs one of `newsrec-bench`'s benchmarks with this binary's node and
//! import, and prints its report.

use std::{net::SocketAddr, path::Path, sync::Arc};

use newsrec_bench::{BenchArgs, BoxError, Host, Report, ServingNode};
use newsrec_config::Config;
use newsrec_lake::Lake;
use newsrec_signals::Signals;

use super::import::{ImportArgs, import_into};
use crate::{
    node::{Node, NodeOptions, Role},
    output,
};

pub async fn run(config: &Config, data_dir: &Path, args: BenchArgs) -> anyhow::Result<()> {
    let host = Binary {
        data_dir: data_dir.to_owned(),
    };
    match newsrec_bench::run(&host, config, args).await? {
        Report::Json(line) => println!("{line}"),
        Report::Table { rows, notes } => {
            print!("{}", output::table(&rows));
            for note in notes {
                println!("{note}");
            }
        }
    }
    Ok(())
}

/// Nodes and imports as `newsrec up` and `newsrec import` run them.
struct Binary {
    data_dir: std::path::PathBuf,
}

impl Host for Binary {
    type Node = Node;

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    async fn start_node(
        &self,
        config: Config,
        data_dir: &Path,
        listener: tokio::net::TcpListener,
    ) -> Result<Node, BoxError> {
        let options = NodeOptions {
            role: Role::All,
            config,
            data_dir: data_dir.to_owned(),
            metrics: None,
        };
        Ok(Node::start(options, listener).await?)
    }

    async fn import_globo(
        &self,
        lake: &Lake,
        files: Vec<std::path::PathBuf>,
    ) -> Result<(), BoxError> {
        import_into(lake, "bench", ImportArgs::globo(files)).await?;
        Ok(())
    }
}

impl ServingNode for Node {
    fn addr(&self) -> SocketAddr {
        Node::addr(self)
    }

    fn signals(&self) -> Option<&Arc<Signals>> {
        Node::signals(self)
    }

    async fn shutdown(self) -> Result<(), BoxError> {
        Ok(Node::shutdown(self).await?)
    }
}
