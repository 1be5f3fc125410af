//! `tcp-echo PORTS PREFIX`: Istio's tcp-echo server. It listens on each of the comma-separated
//! ports and answers every line it receives with `PREFIX line`, so a client sees which
//! version (`one`, `two`) served it.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn usage() -> ! {
    eprintln!("usage: tcp-echo PORT[,PORT…] PREFIX");
    std::process::exit(2);
}

async fn serve(port: u16, prefix: String) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on {}, prefix: {prefix}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("request from {peer}: {line}");
                if writer.write_all(format!("{prefix} {line}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ports, prefix] = args.as_slice() else { usage() };
    let ports: Vec<u16> = ports.split(',').map(|port| port.trim().parse().unwrap_or_else(|_| usage())).collect();
    let servers: Vec<_> = ports.into_iter().map(|port| tokio::spawn(serve(port, prefix.clone()))).collect();
    tokio::select! {
        () = istio_runtime::shutdown_signal() => {}
        result = async {
            for server in servers {
                if let Ok(Err(error)) = server.await {
                    return Err(error);
                }
            }
            Ok(())
        } => {
            istio_runtime::exit_on_error(result);
        }
    }
}
