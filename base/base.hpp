#pragma once
// The public header of base/: the small vocabulary shared by every module.
#include "base/clock.hpp"
#include "base/counters.hpp"
#include "base/hash.hpp"
#include "base/hep.hpp"
#include "base/ip.hpp"
#include "base/result.hpp"
#include "base/text.hpp"
// base/sockaddr.hpp (Endpoint <-> sockaddr) is included on its own by the code that calls the
// socket API, so that the pure modules do not see the socket headers.
