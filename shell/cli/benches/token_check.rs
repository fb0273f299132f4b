//! What checking one signed token costs `serve` (at each hello, reauth and
//! Loro join): HS256 with a shared secret and ES256 with a public key, with
//! the signature checked, and remembered from an earlier check.
//!
//! Run: `cargo bench -p docweave-cli --bench token_check`

// The verifier lives in the binary crate; the bench compiles its file.
#[allow(dead_code)]
#[path = "../src/jwt.rs"]
mod jwt;

use criterion::{criterion_group, criterion_main, Criterion};
use docweave_shell::Checked;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use jwt::{JwtConfig, JwtVerifier};

const SECRET: &str = "docweave-bench-secret-0123456789abcdef";

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "alice",
        "exp": jwt::now_s() + 3600,
        "jti": "bench-1",
        "docs": [{"doc": "team-7/*", "access": "rw"}, {"doc": "public/*", "access": "r"}],
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_check");
    let hs = JwtVerifier::load(JwtConfig {
        secret: Some(SECRET.as_bytes().to_vec()),
        leeway_s: 30,
        ..JwtConfig::default()
    })
    .unwrap();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        hs.verify(&token, jwt::now_s()),
        Checked::Valid { .. }
    ));
    group.bench_function("hs256", |b| {
        b.iter(|| hs.verify_signature(&token, jwt::now_s()))
    });
    group.bench_function("hs256_remembered", |b| {
        b.iter(|| hs.verify(&token, jwt::now_s()))
    });

    let dir = std::env::temp_dir().join(format!("docweave-bench-es256-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let public = dir.join("public.pem");
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let es = JwtVerifier::load(JwtConfig {
        public_keys: vec![public.display().to_string()],
        leeway_s: 30,
        ..JwtConfig::default()
    })
    .unwrap();
    let token = encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        es.verify(&token, jwt::now_s()),
        Checked::Valid { .. }
    ));
    group.bench_function("es256", |b| {
        b.iter(|| es.verify_signature(&token, jwt::now_s()))
    });
    group.bench_function("es256_remembered", |b| {
        b.iter(|| es.verify(&token, jwt::now_s()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
