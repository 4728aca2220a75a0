#!/bin/sh
# make_tls_certs.sh DIR - test certificates for the TLS tests, made fresh at
# test time with Debian's openssl command (P-256 keys, 2 days):
#   ca.pem            the CA the servers' and the clients' certificates chain to
#   server.pem/.key   a server: localhost and 127.0.0.1
#   server2.pem/.key  another one from the same CA (a reload's new certificate)
#   wrong-name.pem/.key  a server from the same CA for elsewhere.test only
#   client.pem/.key   a client certificate from ca.pem
#   client2.pem/.key  another client certificate from ca.pem (another client)
#   other-ca.pem      a CA no one trusts
#   other-client.pem/.key  a client certificate from other-ca.pem
#   other-server.pem/.key  a server (127.0.0.1) from other-ca.pem
#   locked.key        a key protected by a passphrase ("secret")
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

ca() { # NAME CN
    openssl req -x509 $ec -keyout "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
}
leaf() { # NAME CN CA EXT
    openssl req -new $ec -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "$4" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
server_ext="subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
client_ext="extendedKeyUsage=clientAuth"

ca ca "ehrchain test CA"
ca other-ca "some other CA"
leaf server "localhost" ca "$server_ext"
leaf server2 "localhost (renewed)" ca "$server_ext"
leaf wrong-name "elsewhere.test" ca "subjectAltName=DNS:elsewhere.test"
leaf client "integration engine" ca "$client_ext"
leaf client2 "another integration engine" ca "$client_ext"
leaf other-client "stranger" other-ca "$client_ext"
leaf other-server "127.0.0.1" other-ca "$server_ext"
openssl pkey -in client.key -aes256 -passout pass:secret -out locked.key 2>/dev/null
chmod 600 ./*.key
