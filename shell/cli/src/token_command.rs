//! `--token-command CMD`: a long-running client asks the app for its
//! token by running a command (its standard output is the token). The
//! command is the provider `Repo::keep_token_fresh` asks again before the
//! token expires (a signed token when 80% of its lifetime has passed, any
//! other every 5 minutes), presenting the new one on the live connection.

/// Runs `command` with the shell; its trimmed output is the token.
pub fn fetch(command: &str) -> Result<String, String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the token command: {e}"))?;
    if !out.status.success() {
        return Err(format!("the token command failed ({})", out.status));
    }
    let token = String::from_utf8(out.stdout)
        .map_err(|_| "the token command printed something that is not UTF-8".to_string())?;
    let token = token.trim();
    if token.is_empty() {
        return Err("the token command printed no token".into());
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_output_trimmed_is_the_token_and_a_failing_command_gives_none() {
        assert_eq!(fetch("echo ' tok '").unwrap(), "tok");
        assert!(fetch("exit 3").is_err());
    }
}
