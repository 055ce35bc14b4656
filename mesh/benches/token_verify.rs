//! Cost of verifying one bearer token, the per-request price of authentication: a service
//! and a tenant EdDSA token through `Verifier::verify` the first time the verifier sees them
//! (every check, signature included: `service_eddsa`, `tenant_eddsa`) and again (the verifier
//! remembers tokens that passed until they expire: `service_eddsa_again`), a legacy HS256 token
//! through `LegacyVerifier::verify`, and minting the tenant token of one call (`mint_call_token`,
//! what tenant-svc pays per ResolveNumber). Target: EdDSA verify p50 <= 50 µs.
//!
//! Run: `cargo bench -p mesh --bench token_verify`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mesh::auth::{LegacyVerifier, Minter, SigningKey, TENANT_TOKEN_ISSUER, TrustedKeys, Verifier};
use mesh::domain::CustomerId;
use secrecy::SecretString;

fn verify(c: &mut Criterion) {
    let gateway = SigningKey::generate("gateway");
    let tenant = SigningKey::generate(TENANT_TOKEN_ISSUER);
    // A realistic trust bundle: a few services, one of them mid-rotation.
    let mut keys = TrustedKeys::new()
        .with(gateway.public_key())
        .with(tenant.public_key());
    for issuer in ["media-svc", "memory-svc", "gateway"] {
        keys.insert(SigningKey::generate(issuer).public_key());
    }
    let verifier = Verifier::new("tenant-svc", keys.clone());
    let ttl = Duration::from_secs(3600);
    let tenant_minter = Minter::new(tenant);

    let service_token = Minter::new(gateway)
        .mint_service("tenant-svc", &["tenant:resolve"], ttl)
        .expect("mint service token");
    let tenant_token = tenant_minter
        .mint_tenant(
            CustomerId::new(42).expect("positive"),
            "CA0123456789abcdef0123456789abcdef",
            &["media-svc", "memory-svc", "tenant-svc"],
            &["tenant:read", "memory:read", "memory:write"],
            ttl,
        )
        .expect("mint tenant token");
    verifier
        .verify(&service_token)
        .expect("service token verifies");
    verifier
        .verify(&tenant_token)
        .expect("tenant token verifies");

    let legacy = LegacyVerifier::new(&SecretString::from("bench-legacy-secret-0123456789abcdef"))
        .expect("secret");
    let legacy_token = legacy.mint_for_tests(CustomerId::new(42).expect("positive"), ttl);
    legacy.verify(&legacy_token).expect("legacy token verifies");

    let mut group = c.benchmark_group("token_verify");
    // A verifier that has not seen the token yet (built outside the timed part).
    let fresh = || Verifier::new("tenant-svc", keys.clone());
    group.bench_function("service_eddsa", |b| {
        b.iter_batched(
            fresh,
            |v| v.verify(black_box(&service_token)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("tenant_eddsa", |b| {
        b.iter_batched(
            fresh,
            |v| v.verify(black_box(&tenant_token)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("service_eddsa_again", |b| {
        b.iter(|| verifier.verify(black_box(&service_token)))
    });
    group.bench_function("mint_call_token", |b| {
        b.iter(|| {
            tenant_minter.mint_tenant(
                CustomerId::new(42).expect("positive"),
                black_box("CA0123456789abcdef0123456789abcdef"),
                &["media-svc", "memory-svc", "tenant-svc"],
                &["tenant:read", "memory:read", "memory:write"],
                ttl,
            )
        })
    });
    group.bench_function("legacy_hs256", |b| {
        b.iter(|| legacy.verify(black_box(&legacy_token)))
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
