document.querySelectorAll("button[data-copy]").forEach(function (b) {
  b.hidden = false;
  b.addEventListener("click", function () {
    var s = document.getElementById(b.getAttribute("data-copy")).getAttribute("data-secret");
    navigator.clipboard.writeText(s).then(function () {
      b.textContent = "Copied";
      setTimeout(function () { b.textContent = "Copy"; }, 2000);
    });
  });
});