// The whole public API of stagedb.
#ifndef STAGEDB_STAGEDB_H_
#define STAGEDB_STAGEDB_H_

#include "stagedb/auth.h"
#include "stagedb/database.h"
#include "stagedb/document.h"
#include "stagedb/functions.h"
#include "stagedb/id.h"
#include "stagedb/index_range.h"
#include "stagedb/key_codec.h"
#include "stagedb/options.h"
#include "stagedb/query.h"
#include "stagedb/read_set.h"
#include "stagedb/reader.h"
#include "stagedb/secrets.h"
#include "stagedb/subscription.h"
#include "stagedb/transaction.h"
#include "stagedb/value.h"
#include "stagedb/version.h"

#endif  // STAGEDB_STAGEDB_H_
