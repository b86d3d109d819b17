-- A HEPv3 dissector for tshark (Debian 12's Wireshark 4.0 has none built in): decodes the
-- generic chunks (vendor 0) and hands the payload to Wireshark's own SIP dissector. Loaded by
-- hep_capture.sh with `-X lua_script:hep.lua` and selected with `-d udp.port==N,hep`.
local hep = Proto("hep", "HEPv3 (Homer Encapsulation Protocol)")
local f = hep.fields
f.family = ProtoField.uint8("hep.family", "IP family")
f.proto = ProtoField.uint8("hep.proto", "IP protocol")
f.src4 = ProtoField.ipv4("hep.src_ip", "Source IPv4")
f.dst4 = ProtoField.ipv4("hep.dst_ip", "Destination IPv4")
f.src6 = ProtoField.ipv6("hep.src_ip6", "Source IPv6")
f.dst6 = ProtoField.ipv6("hep.dst_ip6", "Destination IPv6")
f.sport = ProtoField.uint16("hep.src_port", "Source port")
f.dport = ProtoField.uint16("hep.dst_port", "Destination port")
f.tsec = ProtoField.uint32("hep.time_sec", "Seconds")
f.tusec = ProtoField.uint32("hep.time_usec", "Microseconds")
f.ptype = ProtoField.uint8("hep.proto_type", "Captured protocol")
f.capid = ProtoField.uint32("hep.capture_id", "Capture agent id")
f.auth = ProtoField.string("hep.auth_key", "Auth key")
f.corr = ProtoField.string("hep.correlation_id", "Correlation id")
f.other = ProtoField.bytes("hep.chunk", "Other chunk")

local by_type = {[1] = f.family, [2] = f.proto, [3] = f.src4, [4] = f.dst4, [5] = f.src6,
                 [6] = f.dst6, [7] = f.sport, [8] = f.dport, [9] = f.tsec, [10] = f.tusec,
                 [11] = f.ptype, [12] = f.capid, [14] = f.auth, [17] = f.corr}
local sip = Dissector.get("sip")

function hep.dissector(tvb, pinfo, tree)
    if tvb:len() < 6 or tvb(0, 4):string() ~= "HEP3" then return 0 end
    local total = tvb(4, 2):uint()
    if total > tvb:len() or total < 6 then return 0 end
    pinfo.cols.protocol = "HEP3"
    local t = tree:add(hep, tvb(0, total))
    local off = 6
    local payload = nil
    while off + 6 <= total do
        local ctype = tvb(off + 2, 2):uint()
        local clen = tvb(off + 4, 2):uint()
        if clen < 6 or off + clen > total then break end
        local value = tvb(off + 6, clen - 6)
        if ctype == 15 then
            payload = value
        elseif by_type[ctype] then
            t:add(by_type[ctype], value)
        else
            t:add(f.other, value)
        end
        off = off + clen
    end
    if payload then sip:call(payload:tvb(), pinfo, tree) end
    return total
end
-- Offered for "Decode As" on UDP ports (tshark -d udp.port==N,hep), bound to none by default.
DissectorTable.get("udp.port"):add_for_decode_as(hep)
