//! `bookinfo SERVICE`: runs one Bookinfo service on `--port` (9080, as in the original).

use std::net::{IpAddr, SocketAddr};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "bookinfo", version, about = "Istio's Bookinfo sample services")]
struct Cli {
    #[command(subcommand)]
    service: Service,
    /// Port to serve on.
    #[arg(long, global = true, default_value_t = 9080)]
    port: u16,
    /// Address to bind.
    #[arg(long, global = true, default_value = "0.0.0.0")]
    address: IpAddr,
}

#[derive(Debug, Subcommand)]
enum Service {
    /// The web front end (calls details and reviews).
    Productpage,
    /// Book details.
    Details,
    /// Book reviews; ENABLE_RATINGS and STAR_COLOR choose v1, v2 or v3.
    Reviews,
    /// Book ratings; SERVICE_VERSION picks v-faulty, v-delayed, v-unavailable or v-unhealthy.
    Ratings,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    istio_runtime::init_logging(false);
    let address = SocketAddr::new(cli.address, cli.port);
    let (name, router) = match cli.service {
        Service::Productpage => {
            let secret = std::env::var("SESSION_SECRET").ok();
            let sessions = bookinfo::session::Sessions::new(secret.as_deref().map(str::as_bytes));
            ("productpage", bookinfo::productpage::router(bookinfo::productpage::Peers::from_env(), sessions))
        }
        Service::Details => ("details", bookinfo::details::router()),
        Service::Reviews => ("reviews", bookinfo::reviews::router(bookinfo::reviews::Settings::from_env())),
        Service::Ratings => {
            let version = std::env::var("SERVICE_VERSION").unwrap_or_default();
            ("ratings", bookinfo::ratings::router(bookinfo::ratings::Variant::from_service_version(&version)))
        }
    };
    istio_runtime::exit_on_error(
        bookinfo::serve(address, router, name).await.map_err(|error| format!("{name}: {error:#}")),
    );
}
