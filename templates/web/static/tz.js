// Preselect the browser's time zone on a fresh sign-up form (the form works without it).
(function () {
  var select = document.getElementById("timezone");
  if (!select || select.getAttribute("data-preselect") !== "browser") return;
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone) return;
  // Browsers (ICU) still report some zones by their old names; the list has the new ones.
  var renamed = {
    "Asia/Calcutta": "Asia/Kolkata", "Asia/Saigon": "Asia/Ho_Chi_Minh",
    "Asia/Katmandu": "Asia/Kathmandu", "Asia/Rangoon": "Asia/Yangon",
    "Europe/Kiev": "Europe/Kyiv", "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Indianapolis": "America/Indiana/Indianapolis", "Atlantic/Faeroe": "Atlantic/Faroe",
    "Pacific/Truk": "Pacific/Chuuk", "Pacific/Ponape": "Pacific/Pohnpei",
    "America/Godthab": "America/Nuuk", "Asia/Ulan_Bator": "Asia/Ulaanbaatar"
  };
  var wanted = [zone, renamed[zone]];
  for (var w = 0; w < wanted.length; w++) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === wanted[w]) { select.value = wanted[w]; return; }
    }
  }
  // Not in the list (an alias we do not show): offer it as it is; the server accepts any valid zone.
  var option = new Option(zone.replace(/_/g, " "), zone, true, true);
  select.insertBefore(option, select.firstChild);
})();
