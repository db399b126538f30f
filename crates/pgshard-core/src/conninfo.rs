//! Worker connection strings: parsing, what the `pgshard.workers` view may show, and host
//! resolution done up front so that tokio never has to resolve a name on a helper thread.

use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::str::FromStr;

use tokio_postgres::config::{Config, Host};

/// libpq's default port, used when a conninfo names none.
pub const DEFAULT_PORT: u16 = 5432;

/// A conninfo that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConninfoError(pub String);

impl fmt::Display for ConninfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConninfoError {}

/// Parses a libpq-style conninfo (`key=value …` or a `postgresql://` URL).
///
/// Only what tokio-postgres understands is accepted; an unknown keyword is an error rather than
/// something silently ignored, so a typo in a worker's conninfo is caught at `add_worker` time.
pub fn parse(conninfo: &str) -> Result<Config, ConninfoError> {
    let config =
        Config::from_str(conninfo).map_err(|e| ConninfoError(crate::describe_error(&e)))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(ConninfoError(
            "no host given: name the worker with host=... (or hostaddr=...)".into(),
        ));
    }
    Ok(config)
}

/// The parts of a worker's conninfo that anyone may see: never the password or other options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    /// First host (a name, an IP address or a Unix socket directory).
    pub host: String,
    pub port: u16,
    /// The database, or the user name when none is given (as libpq does); `None` when neither
    /// is given, because then the connecting role's name is used.
    pub dbname: Option<String>,
}

/// Extracts the publicly visible address of a parsed conninfo.
pub fn public_address(config: &Config) -> PublicAddress {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => config
            .get_hostaddrs()
            .first()
            .map(IpAddr::to_string)
            .unwrap_or_default(),
    };
    let port = config.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
    let dbname = config.get_dbname().or(config.get_user()).map(str::to_owned);
    PublicAddress { host, port, dbname }
}

/// Fills in `hostaddr` for every TCP host that is a name rather than an address, resolving it
/// here, synchronously. tokio resolves names on a blocking-pool thread, and a PostgreSQL
/// backend must not grow threads; resolving once up front also keeps DNS out of the latency of
/// every connection attempt.
pub fn resolve_hosts(config: &mut Config) -> Result<(), ConninfoError> {
    if !config.get_hostaddrs().is_empty() {
        return Ok(());
    }
    let ports = config.get_ports().to_vec();
    let mut addrs = Vec::with_capacity(config.get_hosts().len());
    for (i, host) in config.get_hosts().iter().enumerate() {
        let name = match host {
            Host::Tcp(name) => name,
            // A Unix socket needs no address; tokio-postgres cannot mix the two per host.
            Host::Unix(_) => return Ok(()),
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            addrs.push(ip);
            continue;
        }
        let port = ports
            .get(i)
            .or(ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT);
        let ip = (name.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| ConninfoError(format!("could not resolve host \"{name}\": {e}")))?
            .next()
            .ok_or_else(|| ConninfoError(format!("host \"{name}\" has no address")))?
            .ip();
        addrs.push(ip);
    }
    for ip in addrs {
        config.hostaddr(ip);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_conninfo_exposes_host_port_dbname_only() {
        let config = parse("host=10.0.0.11 port=6432 dbname=app user=ann password=s3cret").unwrap();
        let addr = public_address(&config);
        assert_eq!(
            addr,
            PublicAddress {
                host: "10.0.0.11".into(),
                port: 6432,
                dbname: Some("app".into())
            }
        );
        assert!(!format!("{addr:?}").contains("s3cret"));
    }

    #[test]
    fn url_conninfo_is_accepted() {
        let config = parse("postgresql://ann:pw@127.0.0.1:55433/pgshard").unwrap();
        let addr = public_address(&config);
        assert_eq!(addr.host, "127.0.0.1");
        assert_eq!(addr.port, 55433);
        assert_eq!(addr.dbname.as_deref(), Some("pgshard"));
    }

    #[test]
    fn defaults_follow_libpq() {
        let config = parse("host=127.0.0.1 user=ann").unwrap();
        let addr = public_address(&config);
        assert_eq!(addr.port, DEFAULT_PORT);
        assert_eq!(
            addr.dbname.as_deref(),
            Some("ann"),
            "dbname defaults to the user name"
        );
        let config = parse("host=127.0.0.1").unwrap();
        assert_eq!(public_address(&config).dbname, None);
    }

    #[test]
    fn unix_socket_host_is_shown_as_its_directory() {
        let config = parse("host=/var/run/postgresql dbname=app").unwrap();
        assert_eq!(public_address(&config).host, "/var/run/postgresql");
    }

    #[test]
    fn missing_host_and_bad_syntax_are_errors() {
        assert!(parse("dbname=app").unwrap_err().0.contains("no host"));
        let unknown = parse("host=127.0.0.1 nosuchkeyword=1").unwrap_err().0;
        assert!(unknown.contains("nosuchkeyword"), "{unknown}");
        assert!(parse("host='unterminated").is_err());
    }

    #[test]
    fn resolving_keeps_ip_hosts_and_resolves_names() {
        let mut config = parse("host=127.0.0.1,localhost port=5432").unwrap();
        resolve_hosts(&mut config).unwrap();
        assert_eq!(config.get_hostaddrs().len(), 2);
        assert_eq!(
            config.get_hostaddrs()[0],
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(config.get_hostaddrs()[1].is_loopback());
    }

    #[test]
    fn explicit_hostaddr_is_left_alone() {
        let mut config = parse("host=db.example hostaddr=127.0.0.2").unwrap();
        resolve_hosts(&mut config).unwrap();
        assert_eq!(
            config.get_hostaddrs(),
            &["127.0.0.2".parse::<IpAddr>().unwrap()]
        );
    }
}
