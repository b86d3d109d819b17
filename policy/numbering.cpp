// E.164 country calling codes (ITU-T E.164 Annex / national numbering plans) and
// normalization of dialed numbers.
#include <algorithm>
#include <array>

#include "policy/policy.hpp"

namespace sbc::policy {

namespace {

// NANP members other than US/CA are listed by area code: they share country code 1 and
// toll fraud targets them (e.g. 1876 Jamaica, 1809 Dominican Republic).
constexpr CountryCallingCode kCodes[] = {
    {"US", "1"},      {"CA", "1"},      {"AG", "1268"},    {"AI", "1264"},    {"AS", "1684"},
    {"BB", "1246"},   {"BM", "1441"},   {"BS", "1242"},    {"DM", "1767"},    {"DO", "1809"},
    {"DO", "1829"},   {"DO", "1849"},   {"GD", "1473"},    {"GU", "1671"},    {"JM", "1876"},
    {"JM", "1658"},   {"KN", "1869"},   {"KY", "1345"},    {"LC", "1758"},    {"MP", "1670"},
    {"MS", "1664"},   {"PR", "1787"},   {"PR", "1939"},    {"SX", "1721"},    {"TC", "1649"},
    {"TT", "1868"},   {"VC", "1784"},   {"VG", "1284"},    {"VI", "1340"},    {"EG", "20"},
    {"SS", "211"},    {"MA", "212"},    {"EH", "212"},     {"DZ", "213"},     {"TN", "216"},
    {"LY", "218"},    {"GM", "220"},    {"SN", "221"},     {"MR", "222"},     {"ML", "223"},
    {"GN", "224"},    {"CI", "225"},    {"BF", "226"},     {"NE", "227"},     {"TG", "228"},
    {"BJ", "229"},    {"MU", "230"},    {"LR", "231"},     {"SL", "232"},     {"GH", "233"},
    {"NG", "234"},    {"TD", "235"},    {"CF", "236"},     {"CM", "237"},     {"CV", "238"},
    {"ST", "239"},    {"GQ", "240"},    {"GA", "241"},     {"CG", "242"},     {"CD", "243"},
    {"AO", "244"},    {"GW", "245"},    {"IO", "246"},     {"AC", "247"},     {"SC", "248"},
    {"SD", "249"},    {"RW", "250"},    {"ET", "251"},     {"SO", "252"},     {"DJ", "253"},
    {"KE", "254"},    {"TZ", "255"},    {"UG", "256"},     {"BI", "257"},     {"MZ", "258"},
    {"ZM", "260"},    {"MG", "261"},    {"RE", "262"},     {"YT", "262"},     {"ZW", "263"},
    {"NA", "264"},    {"MW", "265"},    {"LS", "266"},     {"BW", "267"},     {"SZ", "268"},
    {"KM", "269"},    {"ZA", "27"},     {"SH", "290"},     {"ER", "291"},     {"AW", "297"},
    {"FO", "298"},    {"GL", "299"},    {"GR", "30"},      {"NL", "31"},      {"BE", "32"},
    {"FR", "33"},     {"ES", "34"},     {"GI", "350"},     {"PT", "351"},     {"LU", "352"},
    {"IE", "353"},    {"IS", "354"},    {"AL", "355"},     {"MT", "356"},     {"CY", "357"},
    {"FI", "358"},    {"AX", "35818"},  {"BG", "359"},     {"HU", "36"},      {"LT", "370"},
    {"LV", "371"},    {"EE", "372"},    {"MD", "373"},     {"AM", "374"},     {"BY", "375"},
    {"AD", "376"},    {"MC", "377"},    {"SM", "378"},     {"VA", "379"},     {"UA", "380"},
    {"RS", "381"},    {"ME", "382"},    {"XK", "383"},     {"HR", "385"},     {"SI", "386"},
    {"BA", "387"},    {"MK", "389"},    {"IT", "39"},      {"RO", "40"},      {"CH", "41"},
    {"CZ", "420"},    {"SK", "421"},    {"LI", "423"},     {"AT", "43"},      {"GB", "44"},
    {"GG", "441481"}, {"JE", "441534"}, {"IM", "441624"},  {"DK", "45"},      {"SE", "46"},
    {"NO", "47"},     {"SJ", "4779"},   {"PL", "48"},      {"DE", "49"},      {"FK", "500"},
    {"BZ", "501"},    {"GT", "502"},    {"SV", "503"},     {"HN", "504"},     {"NI", "505"},
    {"CR", "506"},    {"PA", "507"},    {"PM", "508"},     {"HT", "509"},     {"PE", "51"},
    {"MX", "52"},     {"CU", "53"},     {"AR", "54"},      {"BR", "55"},      {"CL", "56"},
    {"CO", "57"},     {"VE", "58"},     {"GP", "590"},     {"BL", "590"},     {"MF", "590"},
    {"BO", "591"},    {"GY", "592"},    {"EC", "593"},     {"GF", "594"},     {"PY", "595"},
    {"MQ", "596"},    {"SR", "597"},    {"UY", "598"},     {"CW", "5999"},    {"BQ", "5997"},
    {"MY", "60"},     {"AU", "61"},     {"CX", "6189164"}, {"CC", "6189162"}, {"ID", "62"},
    {"PH", "63"},     {"NZ", "64"},     {"SG", "65"},      {"TH", "66"},      {"TL", "670"},
    {"NF", "6723"},   {"AQ", "6721"},   {"BN", "673"},     {"NR", "674"},     {"PG", "675"},
    {"TO", "676"},    {"SB", "677"},    {"VU", "678"},     {"FJ", "679"},     {"PW", "680"},
    {"WF", "681"},    {"CK", "682"},    {"NU", "683"},     {"WS", "685"},     {"KI", "686"},
    {"NC", "687"},    {"TV", "688"},    {"PF", "689"},     {"TK", "690"},     {"FM", "691"},
    {"MH", "692"},    {"RU", "7"},      {"KZ", "76"},      {"KZ", "77"},      {"JP", "81"},
    {"KR", "82"},     {"VN", "84"},     {"KP", "850"},     {"HK", "852"},     {"MO", "853"},
    {"KH", "855"},    {"LA", "856"},    {"CN", "86"},      {"BD", "880"},     {"TW", "886"},
    {"TR", "90"},     {"IN", "91"},     {"PK", "92"},      {"AF", "93"},      {"LK", "94"},
    {"MM", "95"},     {"MV", "960"},    {"LB", "961"},     {"JO", "962"},     {"SY", "963"},
    {"IQ", "964"},    {"KW", "965"},    {"SA", "966"},     {"YE", "967"},     {"OM", "968"},
    {"PS", "970"},    {"AE", "971"},    {"IL", "972"},     {"BH", "973"},     {"QA", "974"},
    {"BT", "975"},    {"MN", "976"},    {"NP", "977"},     {"IR", "98"},      {"TJ", "992"},
    {"TM", "993"},    {"AZ", "994"},    {"GE", "995"},     {"KG", "996"},     {"UZ", "998"},
};

// Lazily built digit trie over the calling codes for destination_country().
struct CountryIndex {
    PrefixTable table;
    std::vector<std::string_view> iso_of_entry;
    CountryIndex() {
        std::vector<PrefixTable::Entry> entries;
        for (std::uint32_t i = 0; i < std::size(kCodes); ++i) {
            entries.push_back({std::string(kCodes[i].code), i, PrefixCategory::custom});
            iso_of_entry.push_back(kCodes[i].iso);
        }
        table = PrefixTable::build(std::move(entries));
    }
};

const CountryIndex& country_index() {
    static const CountryIndex index;
    return index;
}

bool is_separator(char c) {
    return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')';
}

}  // namespace

std::span<const CountryCallingCode> country_calling_codes() {
    return kCodes;
}

std::vector<std::string_view> calling_codes_of(std::string_view iso) {
    std::vector<std::string_view> out;
    for (const auto& c : kCodes)
        if (c.iso == iso) out.push_back(c.code);
    return out;
}

std::string_view destination_country(std::string_view e164_digits) {
    const auto& index = country_index();
    auto m = index.table.lpm(e164_digits);
    // Several countries share a code (US/CA on 1): the first listed is the answer.
    if (!m.matched() || m.lists.empty()) return {};
    return index.iso_of_entry[m.lists.front()];
}

std::string Numbering::normalize(std::string_view dialed) const {
    // Only the user part of a SIP/tel URI is a number ("sip:+33...@host;user=phone").
    if (auto colon = dialed.find(':'); colon != std::string_view::npos)
        dialed = dialed.substr(colon + 1);
    if (auto at = dialed.find_first_of("@;"); at != std::string_view::npos)
        dialed = dialed.substr(0, at);
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
    // No prefix at all: a short/national number without trunk prefix; keep it as dialed
    // (emergency and service numbers such as 112 are matched this way).
    return digits;
}

}  // namespace sbc::policy
