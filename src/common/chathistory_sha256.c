
/*
 * SHA-256 through libcrypto's EVP interface (OpenSSL 3).
 */


#include <string.h>

#include <openssl/evp.h>

#include "chathistory_sha256.h"


int
chathistory_sha256(const void *data, size_t len,
    unsigned char digest[CHATHISTORY_SHA256_LEN])
{
    if (EVP_Digest(data, len, digest, NULL, EVP_sha256(), NULL) != 1) {
        memset(digest, 0, CHATHISTORY_SHA256_LEN);
        return -1;
    }

    return 0;
}
