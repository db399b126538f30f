//! Logic of pgshard that does not need a PostgreSQL server: it builds and unit-tests with a
//! plain `cargo test`, and the extension crate is a thin shell around it.

pub mod byteahex;
pub mod combine;
pub mod conninfo;
pub mod copytext;
pub mod ddl;
pub mod envelope;
pub mod layout;
pub mod leftovers;
pub mod maintenance;
pub mod merge;
pub mod statements;
pub mod progress;
pub mod rebalance;
pub mod reference;
pub mod sqlstate;
pub mod stats;
pub mod twophase;

/// An error's message followed by those of its causes that it does not already include.
/// tokio-postgres, for one, says "invalid connection string" or "error connecting to server"
/// and keeps the part a user can act on (the bad keyword, the refused connection) in the source.
pub fn describe_error(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn describe_error_appends_new_causes_only() {
        let err = Layer(
            "outer: inner",
            Some(Box::new(Layer(
                "inner",
                Some(Box::new(Layer("root", None))),
            ))),
        );
        assert_eq!(describe_error(&err), "outer: inner: root");
    }
}
pub mod hashing;
