#pragma once
// The public header of base/: the small vocabulary shared by every module.
#include "base/clock.hpp"
#include "base/counters.hpp"
#include "base/ip.hpp"
#include "base/result.hpp"
