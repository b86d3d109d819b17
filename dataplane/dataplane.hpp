#pragma once
// The public header of dataplane/: the perimeter's first line. Every packet is parsed,
// checked against the ban table, classified, rate limited and either relayed (RTP/RTCP),
// handed to signaling or to the kernel, or dropped with a named reason, in bounded memory.
//
// One pipeline, three I/O backends: the socket backend (kernel UDP sockets, io_uring or
// recvmmsg/sendmmsg), the pcap backend (capture in, capture out) and the DPDK backend
// (dataplane/dpdk/, which calls parse_frames / Pipeline / rewrite_frame).
//
// One header per component; this one brings them all:
//   types.hpp          counters, packets and decisions, PipelineConfig
//   parse.hpp          L2-L4 parsing of frames, the SIP method peek
//   rate_limiter.hpp   token buckets per source, prefix and class
//   ban_table.hpp      bans, checked first for every packet
//   media.hpp          the relay's control API (streams, stats, events)
//   pipeline.hpp       the pipeline (decide, rewrite, relay fast path)
//   mailbox.hpp        commands from other threads to the pipeline's owner
//   pcap_backend.hpp   capture in, capture out
//   socket_backend.hpp kernel sockets
// The relay's record layout (media_layout.hpp) is internal to dataplane/.
#include "dataplane/ban_table.hpp"
#include "dataplane/mailbox.hpp"
#include "dataplane/media.hpp"
#include "dataplane/parse.hpp"
#include "dataplane/pcap_backend.hpp"
#include "dataplane/pipeline.hpp"
#include "dataplane/rate_limiter.hpp"
#include "dataplane/socket_backend.hpp"
#include "dataplane/types.hpp"
