//! The emulator's certificates and its TLS-terminating listener for `axum::serve`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::EmulatorError;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted TLS connections waiting for the HTTP server to pick them up.
const ACCEPT_QUEUE: usize = 64;

/// A freshly generated certificate authority and the server certificate it signed.
pub(crate) struct Certificates {
    /// PEM of the CA certificate clients must trust.
    pub(crate) ca_pem: String,
    /// Server certificate chain (leaf, CA).
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub(crate) key: PrivateKeyDer<'static>,
}

/// Generates a CA ("aml-operator emulator CA <random>") and a server certificate for `127.0.0.1`,
/// `localhost` and `::1` signed by it.
pub(crate) fn generate() -> Result<Certificates, EmulatorError> {
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(EmulatorError::Certificate)?;
    let mut ca_name = DistinguishedName::new();
    // A unique name per run, so a client trusting another run's CA reports an unknown issuer.
    let mut serial = [0u8; 6];
    super::util::fill_random(&mut serial);
    ca_name.push(
        DnType::CommonName,
        format!("aml-operator emulator CA {}", super::util::hex(&serial)),
    );
    ca_name.push(DnType::OrganizationName, "aml-operator");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(EmulatorError::Certificate)?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(EmulatorError::Certificate)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(EmulatorError::Certificate)?;
    let mut leaf_name = DistinguishedName::new();
    leaf_name.push(DnType::CommonName, "aml-operator emulator");
    leaf_params.distinguished_name = leaf_name;
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().map_err(EmulatorError::Certificate)?;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(EmulatorError::Certificate)?;

    Ok(Certificates {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    })
}

/// A rustls server configuration (ring provider, HTTP/1.1) for `certs`.
pub(crate) fn server_config(certs: &Certificates) -> Result<rustls::ServerConfig, EmulatorError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(EmulatorError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs.chain.clone(), certs.key.clone_key())
        .map_err(EmulatorError::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TCP connections and completes TLS handshakes in their own tasks, so a slow or broken
/// client never blocks the others; failed handshakes are logged and dropped.
pub(crate) struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor_task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`.
    pub(crate) fn new(tcp: TcpListener, config: rustls::ServerConfig) -> std::io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor_task = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(Self {
            incoming,
            local_addr,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::debug!(error = %err, "emulator: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "emulator: TLS handshake failed")
                }
                Err(_) => tracing::debug!(%peer, "emulator: TLS handshake timed out"),
            }
        });
    }
}

/// A connection's peer and the switch that closes it without another byte (handlers receive it
/// as `ConnectInfo`, to answer a "dropped connection" fault).
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl ConnHandle {
    fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            kill: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on the connection refuses to write: the server closes it without answering.
    pub(crate) fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ConnHandle
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TLS stream that fails every write once its [`ConnHandle`] was killed, so the HTTP server
/// drops the connection instead of sending the response.
pub(crate) struct KillableIo {
    inner: TlsStream<TcpStream>,
    kill: Arc<AtomicBool>,
}

impl KillableIo {
    fn killed(&self) -> bool {
        self.kill.load(Ordering::SeqCst)
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by an injected fault",
    )
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() {
            // No TLS close_notify either: the peer sees the connection end mid-exchange.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = KillableIo;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (inner, peer) = match self.incoming.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when aborted; nothing more will ever arrive.
            None => std::future::pending().await,
        };
        let handle = ConnHandle::new(peer);
        let io = KillableIo {
            inner,
            kill: Arc::clone(&handle.kill),
        };
        (io, handle)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(ConnHandle::new(self.local_addr))
    }
}
