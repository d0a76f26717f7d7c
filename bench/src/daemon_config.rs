//! The config files a run writes for its daemons: the `--daemon-config` file's keys (or none), with
//! the run's own keys set (`external::set`), each loaded as the daemon will load it before the
//! first window, so that a value the daemon refuses fails the run at once.

use std::path::{Path, PathBuf};

use crate::results::Plan;

/// The `--daemon-config` file's table, or an empty one for the defaults.
pub fn base(plan: &Plan) -> Result<toml::Table, String> {
    match &plan.daemon_config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", path.display())),
        None => Ok(toml::Table::new()),
    }
}

/// A daemon config file in the temporary directory, removed when dropped.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    /// Writes `table` as `aggregator-bench-{run}-{pid}-{name}.toml` and loads it as the daemon
    /// will; the config loaded comes with it, for the run to check what it set.
    pub fn write(
        table: &toml::Table,
        run: &str,
        name: &str,
    ) -> Result<(ConfigFile, aggregator::Config), String> {
        let path = std::env::temp_dir().join(format!(
            "aggregator-bench-{run}-{}-{name}.toml",
            std::process::id()
        ));
        let text = toml::to_string(table).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // From here on the file goes when this does, the config refused or not.
        let file = ConfigFile { path };
        match aggregator::Config::load(&file.path) {
            Ok(config) => Ok((file, config)),
            Err(err) => Err(format!("the {run} run's daemon config: {err}")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
