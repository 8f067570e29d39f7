// Preselect the browser's time zone on a fresh sign-up form (the form works without it).
(function () {
  var select = document.getElementById("timezone");
  if (!select || select.getAttribute("data-preselect") !== "browser") return;
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  for (var i = 0; i < select.options.length; i++) {
    if (select.options[i].value === zone) { select.value = zone; return; }
  }
})();
