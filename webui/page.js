// Refreshes the page's main part in place every two seconds: the page is
// rendered on the server; this only fetches it again.
(function () {
  const main = document.querySelector("main");
  const stamp = document.getElementById("refreshed");
  async function refresh() {
    try {
      const r = await fetch("?part=main", { cache: "no-store" });
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      main.innerHTML = await r.text();
      stamp.textContent = "updated " + new Date().toLocaleTimeString();
      stamp.className = "";
    } catch (e) {
      stamp.textContent = "cannot reach the agent: " + e.message;
      stamp.className = "bad";
    }
  }
  setInterval(refresh, 2000);
})();
