
/*
 * Semantic, keyword and hybrid search over recorded messages.
 */


#include "ngx_http_chathistory_api.h"
