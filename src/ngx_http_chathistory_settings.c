
/*
 * Retention settings of an organization.
 */


#include "ngx_http_chathistory_api.h"
