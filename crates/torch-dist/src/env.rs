//! The torchrun environment.

use crate::Error;

/// The rendezvous of one worker, as a launcher describes it (torchrun's variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// `MASTER_ADDR`: the host of rank 0, which serves the store.
    pub master_addr: String,
    /// `MASTER_PORT`: the store's port.
    pub master_port: u16,
    /// `RANK`: this worker, `0..world_size`.
    pub rank: usize,
    /// `WORLD_SIZE`: the number of workers.
    pub world_size: usize,
    /// `LOCAL_RANK`: this worker among those of its machine (0 when unset).
    pub local_rank: usize,
    /// `GLOO_SOCKET_IFNAME`: the network interface Gloo binds to, when set.
    pub ifname: Option<String>,
}

impl DistEnv {
    /// The worker's rendezvous from the process environment: `None` when `WORLD_SIZE` is unset
    /// (a plain single-process run), an error naming the variable when one is malformed.
    pub fn from_env() -> Result<Option<Self>, Error> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`DistEnv::from_env`], reading the variables through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let Some(world) = get("WORLD_SIZE") else {
            return Ok(None);
        };
        let world_size: usize = parse("WORLD_SIZE", &world)?;
        if world_size == 0 {
            return Err(Error::Env {
                var: "WORLD_SIZE",
                value: world,
                why: "must be at least 1".into(),
            });
        }
        let required = |var: &'static str| {
            get(var).ok_or_else(|| Error::Env {
                var,
                value: String::new(),
                why: format!("missing (WORLD_SIZE = {world_size} is set)"),
            })
        };
        let rank_text = required("RANK")?;
        let rank: usize = parse("RANK", &rank_text)?;
        if rank >= world_size {
            return Err(Error::Env {
                var: "RANK",
                value: rank_text,
                why: format!("must be below WORLD_SIZE = {world_size}"),
            });
        }
        let master_addr = required("MASTER_ADDR")?;
        if master_addr.is_empty() {
            return Err(Error::Env {
                var: "MASTER_ADDR",
                value: master_addr,
                why: "empty".into(),
            });
        }
        let master_port = parse("MASTER_PORT", &required("MASTER_PORT")?)?;
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => parse("LOCAL_RANK", &v)?,
            None => 0,
        };
        Ok(Some(Self {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank,
            ifname: get("GLOO_SOCKET_IFNAME").filter(|s| !s.is_empty()),
        }))
    }

    /// The variables that describe this rendezvous (what a launcher sets for a worker).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
            ("RANK", self.rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("LOCAL_RANK", self.local_rank.to_string()),
        ];
        if let Some(i) = &self.ifname {
            v.push(("GLOO_SOCKET_IFNAME", i.clone()));
        }
        v
    }
}

fn parse<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| Error::Env {
        var,
        value: value.to_owned(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>, Error> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn no_world_size_is_a_single_process() {
        assert_eq!(env_of(&[("RANK", "3")]).unwrap(), None);
    }

    #[test]
    fn reads_torchrun_variables_and_round_trips() {
        let e = env_of(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("LOCAL_RANK", "0"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.master_port), (2, 4, 29500));
        assert_eq!(e.master_addr, "node7");
        let vars: Vec<(String, String)> = e
            .vars()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let m: HashMap<String, String> = vars.into_iter().collect();
        assert_eq!(DistEnv::from_vars(|k| m.get(k).cloned()).unwrap(), Some(e));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let base = [
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ];
        let err = env_of(&[base[0], base[1], base[2], ("RANK", "2")]).unwrap_err();
        assert!(err.to_string().contains("RANK") && err.to_string().contains("below"));
        let err = env_of(&[base[0], base[1], ("RANK", "0")]).unwrap_err();
        assert!(err.to_string().contains("MASTER_PORT") && err.to_string().contains("missing"));
        let err = env_of(&[base[0], base[1], ("MASTER_PORT", "99999"), ("RANK", "0")]);
        assert!(err.unwrap_err().to_string().contains("MASTER_PORT"));
        let err = env_of(&[("WORLD_SIZE", "0")]).unwrap_err();
        assert!(err.to_string().contains("WORLD_SIZE"));
        let err = env_of(&[("WORLD_SIZE", "two")]).unwrap_err();
        assert!(err.to_string().contains("WORLD_SIZE"));
    }
}
