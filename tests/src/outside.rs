//! A host "outside the mesh" for the egress tasks: its own network namespace joined to the
//! host by a veth pair on a small network of its own (10.45.0.0/29), running the httpbin
//! sample on port 80 of its first address. Pods reach it through the host, as they would reach
//! the internet from a Kubernetes node. It can also serve a directory over HTTPS on 443
//! (`openssl s_server -WWW`), as an identity provider serves its JWKS, and run an nginx with a
//! configuration the test writes on its second address (a web site with its own certificate,
//! one that wants client certificates, a redirect from HTTP to HTTPS), and an HTTPS (CONNECT)
//! proxy. Removed (processes, namespace, its `/etc/netns` files and links) when dropped.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::Process;

const NETNS: &str = "istio-test-outside";
const HOST_LINK: &str = "outside0";
const PEER_LINK: &str = "outside1";
const HOST_ADDRESS: &str = "10.45.0.1";
/// The outside server's address.
pub const ADDRESS: &str = "10.45.0.2";
/// The outside nginx's address.
pub const NGINX_ADDRESS: &str = "10.45.0.3";
/// The port of the outside CONNECT proxy (on `ADDRESS`), squid's as in 1.4's task.
pub const PROXY_PORT: u16 = 3128;

pub struct OutsideHost {
    server: Option<Process>,
    https: Option<Process>,
    nginx: Option<(Process, tempfile::TempDir)>,
    proxy: Option<(Process, tempfile::TempDir)>,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

fn remove_network() {
    let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(NETNS));
    let _ = Command::new("ip").args(["netns", "del", NETNS]).output();
    let _ = Command::new("ip").args(["link", "del", HOST_LINK]).output();
}

impl OutsideHost {
    /// Creates the namespace and starts httpbin in it; waits until it answers.
    pub fn start() -> OutsideHost {
        remove_network();
        ip(&["netns", "add", NETNS]);
        let mut outside = OutsideHost { server: None, https: None, nginx: None, proxy: None };
        ip(&["link", "add", HOST_LINK, "type", "veth", "peer", "name", PEER_LINK]);
        ip(&["link", "set", PEER_LINK, "netns", NETNS]);
        ip(&["addr", "add", &format!("{HOST_ADDRESS}/29"), "dev", HOST_LINK]);
        ip(&["link", "set", HOST_LINK, "up"]);
        for address in [ADDRESS, NGINX_ADDRESS] {
            ip(&["-n", NETNS, "addr", "add", &format!("{address}/29"), "dev", PEER_LINK]);
        }
        ip(&["-n", NETNS, "link", "set", PEER_LINK, "up"]);
        ip(&["-n", NETNS, "link", "set", "lo", "up"]);
        let httpbin = crate::binary("httpbin").display().to_string();
        outside.server = Some(Process::start_program(
            std::path::Path::new("ip"),
            &["netns", "exec", NETNS, &httpbin, "-b", &format!("{ADDRESS}:80"), "--access-logfile", "-"],
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(
            &format!("{ADDRESS}:80").parse().expect("address"),
            Duration::from_secs(1),
        )
        .is_err()
        {
            assert!(Instant::now() < deadline, "the outside httpbin did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        outside
    }

    /// Serves the files of `dir` over HTTPS on `ADDRESS:443` with this certificate and key
    /// (`https://ADDRESS/NAME` is `dir/NAME`); waits until it accepts connections.
    pub fn serve_https(&mut self, dir: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) {
        let script = format!(
            "cd '{}' && exec openssl s_server -quiet -accept {ADDRESS}:443 -cert '{}' -key '{}' -WWW",
            dir.display(),
            cert.display(),
            key.display()
        );
        self.https =
            Some(Process::start_program(std::path::Path::new("ip"), &["netns", "exec", NETNS, "sh", "-c", &script]));
        let deadline = Instant::now() + Duration::from_secs(10);
        let address = format!("{ADDRESS}:443").parse().expect("address");
        while std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "the outside HTTPS server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs nginx (Debian's) on `NGINX_ADDRESS` with `servers` as its `http` block's content
    /// (`listen` lines name the port alone; the address is added); waits until each port
    /// accepts. `{dir}` in `servers` is a directory of its own, for files the test writes
    /// first with `files` (name, content). Its access log is [`OutsideHost::nginx_log`].
    pub fn serve_nginx(&mut self, servers: &str, files: &[(&str, &[u8])], ports: &[u16]) {
        self.nginx.take();
        let dir = tempfile::tempdir().expect("nginx directory");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("nginx file");
        }
        let root = dir.path().display().to_string();
        let servers = servers.replace("{dir}", &root).replace("listen ", &format!("listen {NGINX_ADDRESS}:"));
        let config = format!(
            "daemon off;\nmaster_process off;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\n\
             events {{}}\nhttp {{\n  access_log {root}/access.log;\n  client_body_temp_path {root};\n  \
             proxy_temp_path {root};\n  fastcgi_temp_path {root};\n  uwsgi_temp_path {root};\n  scgi_temp_path {root};\n\
             {servers}\n}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("nginx.conf");
        let conf = conf.display().to_string();
        let process = Process::start_program(
            std::path::Path::new("ip"),
            &["netns", "exec", NETNS, "nginx", "-p", &root, "-c", &conf],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in ports {
            let address = format!("{NGINX_ADDRESS}:{port}").parse().expect("address");
            while std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
                let errors = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                assert!(Instant::now() < deadline, "the outside nginx did not listen on {port}: {errors}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.nginx = Some((process, dir));
    }

    /// [`OutsideHost::serve_nginx`] with `tls.crt` and `tls.key` in `{dir}`: a certificate for
    /// `names` from a throwaway CA (clients of these servers do not verify it).
    pub fn serve_nginx_with_certificate(&mut self, servers: &str, names: &[&str], ports: &[u16]) {
        let (cert, key) = crate::certs::TestCa::new().issue(names);
        self.serve_nginx(servers, &[("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())], ports);
    }

    /// The outside nginx's access log so far.
    pub fn nginx_log(&self) -> String {
        self.nginx
            .as_ref()
            .map(|(_, dir)| std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Runs an HTTPS (CONNECT) proxy, Debian's tinyproxy, on `ADDRESS:PROXY_PORT`; the names in
    /// `hosts` (`/etc/hosts` lines) are what it resolves, through the namespace's own hosts
    /// file. Its log is [`OutsideHost::proxy_log`].
    pub fn serve_connect_proxy(&mut self, hosts: &str) {
        self.proxy.take();
        let netns_etc = std::path::Path::new("/etc/netns").join(NETNS);
        std::fs::create_dir_all(&netns_etc).expect("/etc/netns directory");
        std::fs::write(netns_etc.join("hosts"), format!("127.0.0.1 localhost\n{hosts}")).expect("namespace hosts");
        let dir = tempfile::tempdir().expect("proxy directory");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
        let root = dir.path().display().to_string();
        let config = format!(
            "User nobody\nGroup nogroup\nPort {PROXY_PORT}\nListen {ADDRESS}\nTimeout 60\n\
             LogFile \"{root}/tinyproxy.log\"\nLogLevel Connect\nPidFile \"{root}/tinyproxy.pid\"\n\
             MaxClients 20\nConnectPort 443\n"
        );
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf, config).expect("tinyproxy.conf");
        let conf = conf.display().to_string();
        let process = Process::start_program(
            std::path::Path::new("ip"),
            &["netns", "exec", NETNS, "tinyproxy", "-d", "-c", &conf],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let address = format!("{ADDRESS}:{PROXY_PORT}").parse().expect("address");
        while std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "the outside proxy did not listen: {}", process.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
        self.proxy = Some((process, dir));
    }

    /// The CONNECT proxy's log so far.
    pub fn proxy_log(&self) -> String {
        self.proxy
            .as_ref()
            .map(|(_, dir)| std::fs::read_to_string(dir.path().join("tinyproxy.log")).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Stops the HTTPS server (the identity provider becomes unreachable).
    pub fn stop_https(&mut self) {
        self.https.take();
    }

    /// The request lines the outside server has logged so far (and not yet returned).
    pub fn logged(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(server) = &self.server {
            while let Some(line) = server.next_line(Duration::from_millis(50)) {
                lines.push(line);
            }
        }
        lines
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        self.proxy.take();
        self.nginx.take();
        self.https.take();
        self.server.take();
        remove_network();
    }
}
