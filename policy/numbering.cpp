// E.164 country calling codes (ITU-T E.164 Annex / national numbering plans) and
// normalization of dialed numbers.
#include <algorithm>
#include <array>

#include "policy/policy.hpp"

namespace sbc::policy {

namespace {

// The North American Numbering Plan shares country code 1 among 25 countries and territories;
// the area code (NPA) says which (NANPA's NPA assignments: 1876 Jamaica, 1809/1829/1849 the
// Dominican Republic, 1212 the US, 1416 Canada). Every geographic NPA in service is listed,
// plus the US non-geographic 710 (government) and 900 (premium). NANP-wide non-geographic
// codes (toll-free 8XX, personal 5XX) belong to no country.
constexpr CountryCallingCode kCodes[] = {
    // US
    {"US", "1201"},
    {"US", "1202"},
    {"US", "1203"},
    {"US", "1205"},
    {"US", "1206"},
    {"US", "1207"},
    {"US", "1208"},
    {"US", "1209"},
    {"US", "1210"},
    {"US", "1212"},
    {"US", "1213"},
    {"US", "1214"},
    {"US", "1215"},
    {"US", "1216"},
    {"US", "1217"},
    {"US", "1218"},
    {"US", "1219"},
    {"US", "1220"},
    {"US", "1223"},
    {"US", "1224"},
    {"US", "1225"},
    {"US", "1227"},
    {"US", "1228"},
    {"US", "1229"},
    {"US", "1231"},
    {"US", "1234"},
    {"US", "1235"},
    {"US", "1239"},
    {"US", "1240"},
    {"US", "1248"},
    {"US", "1251"},
    {"US", "1252"},
    {"US", "1253"},
    {"US", "1254"},
    {"US", "1256"},
    {"US", "1260"},
    {"US", "1262"},
    {"US", "1267"},
    {"US", "1269"},
    {"US", "1270"},
    {"US", "1272"},
    {"US", "1274"},
    {"US", "1276"},
    {"US", "1279"},
    {"US", "1281"},
    {"US", "1283"},
    {"US", "1301"},
    {"US", "1302"},
    {"US", "1303"},
    {"US", "1304"},
    {"US", "1305"},
    {"US", "1307"},
    {"US", "1308"},
    {"US", "1309"},
    {"US", "1310"},
    {"US", "1312"},
    {"US", "1313"},
    {"US", "1314"},
    {"US", "1315"},
    {"US", "1316"},
    {"US", "1317"},
    {"US", "1318"},
    {"US", "1319"},
    {"US", "1320"},
    {"US", "1321"},
    {"US", "1323"},
    {"US", "1324"},
    {"US", "1325"},
    {"US", "1326"},
    {"US", "1327"},
    {"US", "1329"},
    {"US", "1330"},
    {"US", "1331"},
    {"US", "1332"},
    {"US", "1334"},
    {"US", "1336"},
    {"US", "1337"},
    {"US", "1339"},
    {"US", "1341"},
    {"US", "1346"},
    {"US", "1347"},
    {"US", "1350"},
    {"US", "1351"},
    {"US", "1352"},
    {"US", "1353"},
    {"US", "1357"},
    {"US", "1360"},
    {"US", "1361"},
    {"US", "1363"},
    {"US", "1364"},
    {"US", "1369"},
    {"US", "1380"},
    {"US", "1385"},
    {"US", "1386"},
    {"US", "1401"},
    {"US", "1402"},
    {"US", "1404"},
    {"US", "1405"},
    {"US", "1406"},
    {"US", "1407"},
    {"US", "1408"},
    {"US", "1409"},
    {"US", "1410"},
    {"US", "1412"},
    {"US", "1413"},
    {"US", "1414"},
    {"US", "1415"},
    {"US", "1417"},
    {"US", "1419"},
    {"US", "1423"},
    {"US", "1424"},
    {"US", "1425"},
    {"US", "1430"},
    {"US", "1432"},
    {"US", "1434"},
    {"US", "1435"},
    {"US", "1436"},
    {"US", "1440"},
    {"US", "1442"},
    {"US", "1443"},
    {"US", "1445"},
    {"US", "1447"},
    {"US", "1448"},
    {"US", "1457"},
    {"US", "1458"},
    {"US", "1463"},
    {"US", "1464"},
    {"US", "1469"},
    {"US", "1470"},
    {"US", "1472"},
    {"US", "1475"},
    {"US", "1478"},
    {"US", "1479"},
    {"US", "1480"},
    {"US", "1483"},
    {"US", "1484"},
    {"US", "1501"},
    {"US", "1502"},
    {"US", "1503"},
    {"US", "1504"},
    {"US", "1505"},
    {"US", "1507"},
    {"US", "1508"},
    {"US", "1509"},
    {"US", "1510"},
    {"US", "1512"},
    {"US", "1513"},
    {"US", "1515"},
    {"US", "1516"},
    {"US", "1517"},
    {"US", "1518"},
    {"US", "1520"},
    {"US", "1530"},
    {"US", "1531"},
    {"US", "1534"},
    {"US", "1539"},
    {"US", "1540"},
    {"US", "1541"},
    {"US", "1551"},
    {"US", "1557"},
    {"US", "1559"},
    {"US", "1561"},
    {"US", "1562"},
    {"US", "1563"},
    {"US", "1564"},
    {"US", "1567"},
    {"US", "1570"},
    {"US", "1571"},
    {"US", "1572"},
    {"US", "1573"},
    {"US", "1574"},
    {"US", "1575"},
    {"US", "1580"},
    {"US", "1582"},
    {"US", "1585"},
    {"US", "1586"},
    {"US", "1601"},
    {"US", "1602"},
    {"US", "1603"},
    {"US", "1605"},
    {"US", "1606"},
    {"US", "1607"},
    {"US", "1608"},
    {"US", "1609"},
    {"US", "1610"},
    {"US", "1612"},
    {"US", "1614"},
    {"US", "1615"},
    {"US", "1616"},
    {"US", "1617"},
    {"US", "1618"},
    {"US", "1619"},
    {"US", "1620"},
    {"US", "1623"},
    {"US", "1624"},
    {"US", "1626"},
    {"US", "1628"},
    {"US", "1629"},
    {"US", "1630"},
    {"US", "1631"},
    {"US", "1636"},
    {"US", "1640"},
    {"US", "1641"},
    {"US", "1645"},
    {"US", "1646"},
    {"US", "1650"},
    {"US", "1651"},
    {"US", "1656"},
    {"US", "1657"},
    {"US", "1659"},
    {"US", "1660"},
    {"US", "1661"},
    {"US", "1662"},
    {"US", "1667"},
    {"US", "1669"},
    {"US", "1678"},
    {"US", "1679"},
    {"US", "1680"},
    {"US", "1681"},
    {"US", "1682"},
    {"US", "1686"},
    {"US", "1689"},
    {"US", "1701"},
    {"US", "1702"},
    {"US", "1703"},
    {"US", "1704"},
    {"US", "1706"},
    {"US", "1707"},
    {"US", "1708"},
    {"US", "1710"},
    {"US", "1712"},
    {"US", "1713"},
    {"US", "1714"},
    {"US", "1715"},
    {"US", "1716"},
    {"US", "1717"},
    {"US", "1718"},
    {"US", "1719"},
    {"US", "1720"},
    {"US", "1724"},
    {"US", "1725"},
    {"US", "1726"},
    {"US", "1727"},
    {"US", "1728"},
    {"US", "1730"},
    {"US", "1731"},
    {"US", "1732"},
    {"US", "1734"},
    {"US", "1737"},
    {"US", "1738"},
    {"US", "1740"},
    {"US", "1743"},
    {"US", "1747"},
    {"US", "1748"},
    {"US", "1754"},
    {"US", "1757"},
    {"US", "1760"},
    {"US", "1762"},
    {"US", "1763"},
    {"US", "1765"},
    {"US", "1769"},
    {"US", "1770"},
    {"US", "1771"},
    {"US", "1772"},
    {"US", "1773"},
    {"US", "1774"},
    {"US", "1775"},
    {"US", "1779"},
    {"US", "1781"},
    {"US", "1785"},
    {"US", "1786"},
    {"US", "1801"},
    {"US", "1802"},
    {"US", "1803"},
    {"US", "1804"},
    {"US", "1805"},
    {"US", "1806"},
    {"US", "1808"},
    {"US", "1810"},
    {"US", "1812"},
    {"US", "1813"},
    {"US", "1814"},
    {"US", "1815"},
    {"US", "1816"},
    {"US", "1817"},
    {"US", "1818"},
    {"US", "1820"},
    {"US", "1821"},
    {"US", "1826"},
    {"US", "1828"},
    {"US", "1830"},
    {"US", "1831"},
    {"US", "1832"},
    {"US", "1835"},
    {"US", "1838"},
    {"US", "1839"},
    {"US", "1840"},
    {"US", "1843"},
    {"US", "1845"},
    {"US", "1847"},
    {"US", "1848"},
    {"US", "1850"},
    {"US", "1854"},
    {"US", "1856"},
    {"US", "1857"},
    {"US", "1858"},
    {"US", "1859"},
    {"US", "1860"},
    {"US", "1861"},
    {"US", "1862"},
    {"US", "1863"},
    {"US", "1864"},
    {"US", "1865"},
    {"US", "1870"},
    {"US", "1872"},
    {"US", "1878"},
    {"US", "1900"},
    {"US", "1901"},
    {"US", "1903"},
    {"US", "1904"},
    {"US", "1906"},
    {"US", "1907"},
    {"US", "1908"},
    {"US", "1909"},
    {"US", "1910"},
    {"US", "1912"},
    {"US", "1913"},
    {"US", "1914"},
    {"US", "1915"},
    {"US", "1916"},
    {"US", "1917"},
    {"US", "1918"},
    {"US", "1919"},
    {"US", "1920"},
    {"US", "1924"},
    {"US", "1925"},
    {"US", "1928"},
    {"US", "1929"},
    {"US", "1930"},
    {"US", "1931"},
    {"US", "1934"},
    {"US", "1936"},
    {"US", "1937"},
    {"US", "1938"},
    {"US", "1940"},
    {"US", "1941"},
    {"US", "1943"},
    {"US", "1945"},
    {"US", "1947"},
    {"US", "1948"},
    {"US", "1949"},
    {"US", "1951"},
    {"US", "1952"},
    {"US", "1954"},
    {"US", "1956"},
    {"US", "1959"},
    {"US", "1970"},
    {"US", "1971"},
    {"US", "1972"},
    {"US", "1973"},
    {"US", "1975"},
    {"US", "1978"},
    {"US", "1979"},
    {"US", "1980"},
    {"US", "1983"},
    {"US", "1984"},
    {"US", "1985"},
    {"US", "1986"},
    {"US", "1989"},
    // CA
    {"CA", "1204"},
    {"CA", "1226"},
    {"CA", "1236"},
    {"CA", "1249"},
    {"CA", "1250"},
    {"CA", "1257"},
    {"CA", "1263"},
    {"CA", "1289"},
    {"CA", "1306"},
    {"CA", "1343"},
    {"CA", "1354"},
    {"CA", "1365"},
    {"CA", "1367"},
    {"CA", "1368"},
    {"CA", "1382"},
    {"CA", "1387"},
    {"CA", "1403"},
    {"CA", "1416"},
    {"CA", "1418"},
    {"CA", "1428"},
    {"CA", "1431"},
    {"CA", "1437"},
    {"CA", "1438"},
    {"CA", "1450"},
    {"CA", "1460"},
    {"CA", "1468"},
    {"CA", "1474"},
    {"CA", "1506"},
    {"CA", "1514"},
    {"CA", "1519"},
    {"CA", "1548"},
    {"CA", "1579"},
    {"CA", "1581"},
    {"CA", "1584"},
    {"CA", "1587"},
    {"CA", "1600"},
    {"CA", "1604"},
    {"CA", "1613"},
    {"CA", "1639"},
    {"CA", "1647"},
    {"CA", "1672"},
    {"CA", "1683"},
    {"CA", "1705"},
    {"CA", "1709"},
    {"CA", "1742"},
    {"CA", "1753"},
    {"CA", "1778"},
    {"CA", "1780"},
    {"CA", "1782"},
    {"CA", "1807"},
    {"CA", "1819"},
    {"CA", "1825"},
    {"CA", "1867"},
    {"CA", "1873"},
    {"CA", "1879"},
    {"CA", "1902"},
    {"CA", "1905"},
    {"CA", "1942"},
    // AG
    {"AG", "1268"},
    // AI
    {"AI", "1264"},
    // AS
    {"AS", "1684"},
    // BB
    {"BB", "1246"},
    // BM
    {"BM", "1441"},
    // BS
    {"BS", "1242"},
    // DM
    {"DM", "1767"},
    // DO
    {"DO", "1809"},
    {"DO", "1829"},
    {"DO", "1849"},
    // GD
    {"GD", "1473"},
    // GU
    {"GU", "1671"},
    // JM
    {"JM", "1658"},
    {"JM", "1876"},
    // KN
    {"KN", "1869"},
    // KY
    {"KY", "1345"},
    // LC
    {"LC", "1758"},
    // MP
    {"MP", "1670"},
    // MS
    {"MS", "1664"},
    // PR
    {"PR", "1787"},
    {"PR", "1939"},
    // SX
    {"SX", "1721"},
    // TC
    {"TC", "1649"},
    // TT
    {"TT", "1868"},
    // VC
    {"VC", "1784"},
    // VG
    {"VG", "1284"},
    // VI
    {"VI", "1340"},
    // The rest of the world, by ITU-T E.164 country calling code.
    {"EG", "20"},
    {"SS", "211"},
    {"MA", "212"},
    {"EH", "212"},
    {"DZ", "213"},
    {"TN", "216"},
    {"LY", "218"},
    {"GM", "220"},
    {"SN", "221"},
    {"MR", "222"},
    {"ML", "223"},
    {"GN", "224"},
    {"CI", "225"},
    {"BF", "226"},
    {"NE", "227"},
    {"TG", "228"},
    {"BJ", "229"},
    {"MU", "230"},
    {"LR", "231"},
    {"SL", "232"},
    {"GH", "233"},
    {"NG", "234"},
    {"TD", "235"},
    {"CF", "236"},
    {"CM", "237"},
    {"CV", "238"},
    {"ST", "239"},
    {"GQ", "240"},
    {"GA", "241"},
    {"CG", "242"},
    {"CD", "243"},
    {"AO", "244"},
    {"GW", "245"},
    {"IO", "246"},
    {"AC", "247"},
    {"SC", "248"},
    {"SD", "249"},
    {"RW", "250"},
    {"ET", "251"},
    {"SO", "252"},
    {"DJ", "253"},
    {"KE", "254"},
    {"TZ", "255"},
    {"UG", "256"},
    {"BI", "257"},
    {"MZ", "258"},
    {"ZM", "260"},
    {"MG", "261"},
    {"RE", "262"},
    {"YT", "262"},
    {"ZW", "263"},
    {"NA", "264"},
    {"MW", "265"},
    {"LS", "266"},
    {"BW", "267"},
    {"SZ", "268"},
    {"KM", "269"},
    {"ZA", "27"},
    {"SH", "290"},
    {"ER", "291"},
    {"AW", "297"},
    {"FO", "298"},
    {"GL", "299"},
    {"GR", "30"},
    {"NL", "31"},
    {"BE", "32"},
    {"FR", "33"},
    {"ES", "34"},
    {"GI", "350"},
    {"PT", "351"},
    {"LU", "352"},
    {"IE", "353"},
    {"IS", "354"},
    {"AL", "355"},
    {"MT", "356"},
    {"CY", "357"},
    {"FI", "358"},
    {"AX", "35818"},
    {"BG", "359"},
    {"HU", "36"},
    {"LT", "370"},
    {"LV", "371"},
    {"EE", "372"},
    {"MD", "373"},
    {"AM", "374"},
    {"BY", "375"},
    {"AD", "376"},
    {"MC", "377"},
    {"SM", "378"},
    {"VA", "379"},
    {"UA", "380"},
    {"RS", "381"},
    {"ME", "382"},
    {"XK", "383"},
    {"HR", "385"},
    {"SI", "386"},
    {"BA", "387"},
    {"MK", "389"},
    {"IT", "39"},
    {"RO", "40"},
    {"CH", "41"},
    {"CZ", "420"},
    {"SK", "421"},
    {"LI", "423"},
    {"AT", "43"},
    {"GB", "44"},
    {"GG", "441481"},
    {"JE", "441534"},
    {"IM", "441624"},
    {"DK", "45"},
    {"SE", "46"},
    {"NO", "47"},
    {"SJ", "4779"},
    {"PL", "48"},
    {"DE", "49"},
    {"FK", "500"},
    {"BZ", "501"},
    {"GT", "502"},
    {"SV", "503"},
    {"HN", "504"},
    {"NI", "505"},
    {"CR", "506"},
    {"PA", "507"},
    {"PM", "508"},
    {"HT", "509"},
    {"PE", "51"},
    {"MX", "52"},
    {"CU", "53"},
    {"AR", "54"},
    {"BR", "55"},
    {"CL", "56"},
    {"CO", "57"},
    {"VE", "58"},
    {"GP", "590"},
    {"BL", "590"},
    {"MF", "590"},
    {"BO", "591"},
    {"GY", "592"},
    {"EC", "593"},
    {"GF", "594"},
    {"PY", "595"},
    {"MQ", "596"},
    {"SR", "597"},
    {"UY", "598"},
    {"CW", "5999"},
    {"BQ", "5997"},
    {"MY", "60"},
    {"AU", "61"},
    {"CX", "6189164"},
    {"CC", "6189162"},
    {"ID", "62"},
    {"PH", "63"},
    {"NZ", "64"},
    {"SG", "65"},
    {"TH", "66"},
    {"TL", "670"},
    {"NF", "6723"},
    {"AQ", "6721"},
    {"BN", "673"},
    {"NR", "674"},
    {"PG", "675"},
    {"TO", "676"},
    {"SB", "677"},
    {"VU", "678"},
    {"FJ", "679"},
    {"PW", "680"},
    {"WF", "681"},
    {"CK", "682"},
    {"NU", "683"},
    {"WS", "685"},
    {"KI", "686"},
    {"NC", "687"},
    {"TV", "688"},
    {"PF", "689"},
    {"TK", "690"},
    {"FM", "691"},
    {"MH", "692"},
    {"RU", "7"},
    {"KZ", "76"},
    {"KZ", "77"},
    {"JP", "81"},
    {"KR", "82"},
    {"VN", "84"},
    {"KP", "850"},
    {"HK", "852"},
    {"MO", "853"},
    {"KH", "855"},
    {"LA", "856"},
    {"CN", "86"},
    {"BD", "880"},
    {"TW", "886"},
    {"TR", "90"},
    {"IN", "91"},
    {"PK", "92"},
    {"AF", "93"},
    {"LK", "94"},
    {"MM", "95"},
    {"MV", "960"},
    {"LB", "961"},
    {"JO", "962"},
    {"SY", "963"},
    {"IQ", "964"},
    {"KW", "965"},
    {"SA", "966"},
    {"YE", "967"},
    {"OM", "968"},
    {"PS", "970"},
    {"AE", "971"},
    {"IL", "972"},
    {"BH", "973"},
    {"QA", "974"},
    {"BT", "975"},
    {"MN", "976"},
    {"NP", "977"},
    {"IR", "98"},
    {"TJ", "992"},
    {"TM", "993"},
    {"AZ", "994"},
    {"GE", "995"},
    {"KG", "996"},
    {"UZ", "998"},
};

// Lazily built digit trie over the calling codes for destination_country(): value = index+1
// into kCodes. Several countries share a code (MA/EH on 212): the first listed is the answer,
// so the codes are added last to first.
struct CountryIndex {
    base::DigitTrie trie;
    CountryIndex() {
        for (std::size_t i = std::size(kCodes); i-- > 0;) trie.add(kCodes[i].code, i + 1, false);
    }
};

const CountryIndex& country_index() {
    static const CountryIndex index;
    return index;
}

constexpr std::string_view kNanpCode = "1";

// Only the user part of a SIP/tel URI is a number ("sip:+33...@host;user=phone").
std::string_view user_part(std::string_view dialed) {
    if (auto colon = dialed.find(':'); colon != std::string_view::npos)
        dialed = dialed.substr(colon + 1);
    if (auto at = dialed.find_first_of("@;"); at != std::string_view::npos)
        dialed = dialed.substr(0, at);
    return dialed;
}

bool is_separator(char c) {
    return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')';
}

}  // namespace

std::span<const CountryCallingCode> country_calling_codes() {
    return kCodes;
}

bool is_country_calling_code(std::string_view code) {
    if (code == kNanpCode) return true;
    return std::any_of(std::begin(kCodes), std::end(kCodes),
                       [&](const auto& c) { return c.code == code; });
}

std::vector<std::string_view> calling_codes_of(std::string_view iso) {
    std::vector<std::string_view> out;
    for (const auto& c : kCodes)
        if (c.iso == iso) out.push_back(c.code);
    return out;
}

std::string_view destination_country(std::string_view e164_digits) {
    const auto w = country_index().trie.walk(e164_digits);
    if (w.deepest == 0) return {};
    return kCodes[w.deepest - 1].iso;
}

std::string home_country_of(std::string_view calling_code) {
    std::string_view found;
    for (const auto& c : kCodes) {
        if (c.code != calling_code) continue;
        if (!found.empty() && found != c.iso) return {};  // shared code: no single country
        found = c.iso;
    }
    return std::string(found);
}

std::string Numbering::check_extension_pattern(std::string_view pattern) {
    if (pattern.empty() || pattern.size() > kMaxExtensionDigits)
        return "an extension pattern has 1 to " + std::to_string(kMaxExtensionDigits) +
               " characters";
    for (char c : pattern)
        if (!((c >= '0' && c <= '9') || c == 'X' || c == 'Z' || c == 'N'))
            return std::string("'") + c + "' is not a digit or X (any digit), Z (1-9), N (2-9)";
    return {};
}

bool Numbering::is_extension(std::string_view dialed) const {
    if (extensions.empty()) return false;
    dialed = user_part(dialed);
    for (const auto& p : extensions) {
        if (p.size() != dialed.size()) continue;
        bool match = true;
        for (std::size_t i = 0; i < p.size() && match; ++i) {
            const char d = dialed[i];
            switch (p[i]) {
                case 'X':
                    match = d >= '0' && d <= '9';
                    break;
                case 'Z':
                    match = d >= '1' && d <= '9';
                    break;
                case 'N':
                    match = d >= '2' && d <= '9';
                    break;
                default:
                    match = d == p[i];
            }
        }
        if (match) return true;
    }
    return false;
}

std::string Numbering::normalize(std::string_view dialed) const {
    dialed = user_part(dialed);
    // An internal extension is not an E.164 number: it is kept exactly as dialed, even when
    // it starts like a national or international prefix.
    if (is_extension(dialed)) return std::string(dialed);
    std::string digits;
    bool plus = false;
    for (std::size_t i = 0; i < dialed.size(); ++i) {
        char c = dialed[i];
        if (c == '+' && digits.empty() && !plus) {
            plus = true;
        } else if (c >= '0' && c <= '9') {
            digits.push_back(c);
        } else if (!is_separator(c)) {
            return {};
        }
    }
    if (digits.empty() || digits.size() > 20) return {};
    if (plus) return digits;
    if (!international_prefix.empty() && digits.starts_with(international_prefix))
        return digits.substr(international_prefix.size());
    if (!national_prefix.empty() && digits.starts_with(national_prefix)) {
        if (default_country_code.empty()) return {};
        return default_country_code + digits.substr(national_prefix.size());
    }
    // NANP ten-digit dialing: NPA (2-9) + 7 digits without the trunk prefix 1 is a national
    // number, not "+212..." (Morocco).
    if (default_country_code == kNanpCode && digits.size() == 10 && digits[0] >= '2')
        return std::string(kNanpCode) + digits;
    // No prefix at all: a short/national number without trunk prefix; keep it as dialed
    // (emergency and service numbers such as 112 are matched this way).
    return digits;
}

}  // namespace sbc::policy
