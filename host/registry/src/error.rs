//! The registry's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while loading, querying or editing the
/// worker registry.
///
/// Every message names the file it is about and, where there is one, the
/// worker, because a user reads these when the host refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file is not valid YAML, or its top level does not have the expected shape.
    #[error("{}: {message}", file.display())]
    File {
        /// The registry file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// One worker's entry is invalid (bad field, unknown resource, bad digest …).
    #[error("{}: worker {worker}{}: {message}", file.display(), LineNo(*line))]
    Worker {
        /// The registry file that defines the worker.
        file: PathBuf,
        /// The worker's full name (`<domain>/<key>`), or its key alone when
        /// the domain is not known (editing a file).
        worker: String,
        /// The 1-based line of the worker's key in the file, when found.
        line: Option<usize>,
        /// What is wrong with it.
        message: String,
    },

    /// One resource of `resources.yaml` is invalid.
    #[error("{}: {kind} {name}: {message}", file.display())]
    Resource {
        /// The resources file.
        file: PathBuf,
        /// The kind of resource (`table`, `queue`, `topic`, `service` …).
        kind: &'static str,
        /// The resource's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },

    /// The same full worker name is defined twice.
    #[error(
        "{}: worker {worker}: defined more than once (also in {})",
        second.display(),
        first.display()
    )]
    DuplicateWorker {
        /// The worker's full name.
        worker: String,
        /// The file that defined it first.
        first: PathBuf,
        /// The file that defined it again.
        second: PathBuf,
    },

    /// A worker name was looked up that the registry does not define.
    #[error("{}: unknown worker {name}; known workers: {}", dir.display(), KnownNames(known))]
    UnknownWorker {
        /// The registry directory.
        dir: PathBuf,
        /// The name that was looked up.
        name: String,
        /// Every worker the registry defines.
        known: Vec<String>,
    },

    /// Several problems were found at once (loading reports all of them).
    #[error("{} problems in the worker registry:\n{}", errors.len(), Lines(errors))]
    Multiple {
        /// The individual problems, in file order.
        errors: Vec<RegistryError>,
    },
}

impl RegistryError {
    /// The individual problems: the inner list of [`RegistryError::Multiple`],
    /// or this error alone.
    pub fn problems(&self) -> Vec<&RegistryError> {
        match self {
            RegistryError::Multiple { errors } => errors.iter().collect(),
            other => vec![other],
        }
    }

    /// One error from a non-empty list: the error itself when there is one,
    /// [`RegistryError::Multiple`] otherwise. `None` when the list is empty.
    pub(crate) fn from_list(mut errors: Vec<RegistryError>) -> Option<RegistryError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(RegistryError::Multiple { errors }),
        }
    }
}

struct KnownNames<'a>(&'a [String]);

impl fmt::Display for KnownNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

struct LineNo(Option<usize>);

impl fmt::Display for LineNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
    }
}

struct Lines<'a>(&'a [RegistryError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {e}")?;
        }
        Ok(())
    }
}
