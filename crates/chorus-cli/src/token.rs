//! `chorus token`: mint an access token for a relay that shares the secret.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chorus_relay::auth::{self, Claims, MIN_SECRET_BYTES, Right};
use clap::{ArgGroup, Args, ValueEnum};

/// `chorus token` options.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["doc", "prefix"])))]
pub(crate) struct TokenArgs {
    /// The secret the relay verifies tokens with (at least 16 bytes). Prefer the
    /// environment variable: other users can see a command line.
    #[arg(long, env = "CHORUS_AUTH_SECRET", hide_env_values = true)]
    secret: String,
    /// The one document the token is for.
    #[arg(long)]
    doc: Option<String>,
    /// The token is for every document whose id starts with this.
    #[arg(long)]
    prefix: Option<String>,
    /// What the bearer may do: read; write (and read); relay (a federation link: read,
    /// write, and forward any replica's ops).
    #[arg(long, value_enum)]
    right: RightArg,
    /// How long the token is valid, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    ttl: u64,
}

/// [`Right`] as a command-line value; the relay crate does not depend on clap.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RightArg {
    Read,
    Write,
    Relay,
}

impl From<RightArg> for Right {
    fn from(r: RightArg) -> Self {
        match r {
            RightArg::Read => Right::Read,
            RightArg::Write => Right::Write,
            RightArg::Relay => Right::Relay,
        }
    }
}

/// Runs `chorus token`: prints the token, alone on one line.
pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("reading the clock: it is set before 1970")?
        .as_secs();
    println!("{}", mint(args, now)?);
    Ok(())
}

/// The token `args` ask for, valid from `now_unix` for `--ttl` seconds.
fn mint(args: &TokenArgs, now_unix: u64) -> anyhow::Result<String> {
    let secret = args.secret.as_bytes();
    if secret.len() < MIN_SECRET_BYTES {
        bail!(
            "the secret (--secret or CHORUS_AUTH_SECRET) is {} bytes; it must be at least \
             {MIN_SECRET_BYTES}: generate one with `openssl rand -hex 32` and give the relay \
             the same",
            secret.len()
        );
    }
    if args.ttl == 0 {
        bail!("--ttl 0 makes a token that has already expired: give a number of seconds");
    }
    let exp = now_unix
        .checked_add(args.ttl)
        .context("--ttl is too large: give a number of seconds from now")?;
    let claims = match (&args.doc, &args.prefix) {
        (Some(doc), None) => {
            if doc.is_empty() {
                bail!("--doc is empty: name the document");
            }
            Claims::for_doc(doc.as_str(), args.right.into(), exp)
        }
        (None, Some(prefix)) => Claims::for_prefix(prefix.as_str(), args.right.into(), exp),
        // clap's group makes these impossible; say so rather than panic.
        _ => bail!("give exactly one of --doc and --prefix"),
    };
    Ok(auth::mint(secret, &claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: TokenArgs,
    }

    fn parse(argv: &[&str]) -> Result<TokenArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("token").chain(argv.iter().copied())).map(|c| c.args)
    }

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn mints_a_token_the_relay_accepts() {
        let args = parse(&["--secret", SECRET, "--doc", "notes", "--right", "write"]).unwrap();
        let token = mint(&args, 1000).unwrap();
        assert!(!token.contains(char::is_whitespace));
        let claims = auth::verify(SECRET.as_bytes(), &token, "notes", 1000).unwrap();
        assert_eq!(claims, Claims::for_doc("notes", Right::Write, 4600));

        let args = parse(&[
            "--secret", SECRET, "--prefix", "team/", "--right", "relay", "--ttl", "60",
        ])
        .unwrap();
        let token = mint(&args, 1000).unwrap();
        let claims = auth::verify(SECRET.as_bytes(), &token, "team/x", 1000).unwrap();
        assert_eq!(claims, Claims::for_prefix("team/", Right::Relay, 1060));
    }

    #[test]
    fn refuses_a_short_secret() {
        let args = parse(&["--secret", "short", "--doc", "d", "--right", "read"]).unwrap();
        let err = mint(&args, 0).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
    }

    #[test]
    fn refuses_a_useless_ttl() {
        let args = parse(&[
            "--secret", SECRET, "--doc", "d", "--right", "read", "--ttl", "0",
        ]);
        assert!(mint(&args.unwrap(), 0).is_err());
        let args = parse(&[
            "--secret", SECRET, "--doc", "d", "--right", "read", "--ttl", "9",
        ]);
        assert!(mint(&args.unwrap(), u64::MAX).is_err());
    }

    #[test]
    fn needs_exactly_one_scope_and_a_right() {
        assert!(parse(&["--secret", SECRET, "--right", "read"]).is_err());
        assert!(
            parse(&[
                "--secret", SECRET, "--doc", "a", "--prefix", "b", "--right", "read"
            ])
            .is_err()
        );
        assert!(parse(&["--secret", SECRET, "--doc", "a"]).is_err());
        assert!(parse(&["--secret", SECRET, "--doc", "a", "--right", "admin"]).is_err());
    }
}
